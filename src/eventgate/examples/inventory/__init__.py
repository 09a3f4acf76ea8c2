"""The m-r inventory (reference 004) as an eventgate app: what `eventgate up` runs by default.

Domain in `domain.py`, read models in `read_models.py`, the HTTP resource in `resources.py`,
functions (low-stock alert, audit trail) in `functions.py`; only eventgate's public API.
"""

from __future__ import annotations

from pathlib import Path

from eventgate import App

from .domain import COMMANDS, EVENTS, InventoryItem
from .functions import audit_trail, low_stock_alert
from .read_models import INVENTORY_PROJECTIONS
from .resources import inventory_items

__all__ = ["app", "inventory_app"]


def inventory_app() -> App:
    """A fresh definition of the inventory service."""
    return App(
        name="inventory",
        commands=dict.fromkeys(COMMANDS, InventoryItem),
        events=EVENTS,
        projections=INVENTORY_PROJECTIONS,
        resources=[inventory_items],
        functions=[low_stock_alert, audit_trail],
        event_schemas=Path(__file__).with_name("event-schemas.json"),
    )


app = inventory_app()
