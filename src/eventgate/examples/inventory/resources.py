"""The inventory over HTTP: reference 004's resource, declared."""

from __future__ import annotations

from eventgate import ItemView, ListView, Resource

from .domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    DeactivateInventoryItem,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)
from .read_models import item_details, item_list

inventory_items = Resource(
    "/api/inventory-items",
    aliases=["/api/InventoryItem"],  # reference 004's spelling
    create=CreateInventoryItem,
    put=RenameInventoryItem,
    delete=DeactivateInventoryItem,
    post=[CheckInItemsToInventory, RemoveItemsFromInventory],
    list=ListView(
        item_list,
        fields=["id", "name"],
        order=["name", "id"],
        where={"active": True},
        search="name",
        model="InventoryItemListDataCollection",
    ),
    item=ItemView(
        item_details,
        fields=["id", "name", "current_count", "version"],
        gone={"active": False},
        model="InventoryItemDetails",
    ),
)
"""Items: created by POST, renamed by PUT, deactivated by DELETE, stock moved by POST."""
