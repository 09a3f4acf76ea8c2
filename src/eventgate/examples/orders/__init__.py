"""Orders placed against the inventory example's items, with a saga that reserves their stock.

Run it with `eventgate up --app eventgate.examples.orders:app`: the inventory's resource,
read models and functions, plus `/api/orders` and the `order_saga` function. Domain in
`domain.py`, read model in `read_models.py`, the HTTP resource in `resources.py`, the saga in
`functions.py` (whose docstring says why it never reserves or releases twice); only
eventgate's public API. docs/orders.md is the walk-through.
"""

from __future__ import annotations

from pathlib import Path

from eventgate import App
from eventgate.examples.inventory.domain import COMMANDS as INVENTORY_COMMANDS
from eventgate.examples.inventory.domain import EVENTS as INVENTORY_EVENTS
from eventgate.examples.inventory.domain import InventoryItem
from eventgate.examples.inventory.functions import audit_trail, low_stock_alert
from eventgate.examples.inventory.read_models import INVENTORY_PROJECTIONS
from eventgate.examples.inventory.resources import inventory_items

from .domain import COMMANDS, EVENTS, Order
from .functions import order_saga
from .read_models import ORDER_PROJECTIONS
from .resources import orders

__all__ = ["app", "orders_app"]


def orders_app() -> App:
    """A fresh definition of the orders service (which includes the inventory)."""
    return App(
        name="orders",
        commands={
            **dict.fromkeys(INVENTORY_COMMANDS, InventoryItem),
            **dict.fromkeys(COMMANDS, Order),
        },
        events=[*INVENTORY_EVENTS, *EVENTS],
        projections=[*INVENTORY_PROJECTIONS, *ORDER_PROJECTIONS],
        resources=[inventory_items, orders],
        functions=[low_stock_alert, audit_trail, order_saga],
        event_schemas=Path(__file__).with_name("event-schemas.json"),
    )


app = orders_app()
