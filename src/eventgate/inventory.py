"""The m-r inventory service as an `App`: what `eventgate up` runs by default."""

from __future__ import annotations

from eventgate.app import App
from eventgate.domain.inventory import COMMANDS, EVENTS, InventoryItem
from eventgate.projections.inventory import INVENTORY_PROJECTIONS

__all__ = ["inventory_app"]


def inventory_app() -> App:
    """A fresh definition of the inventory service."""
    return App(
        name="inventory",
        commands=dict.fromkeys(COMMANDS, InventoryItem),
        events=EVENTS,
        projections=INVENTORY_PROJECTIONS,
    )
