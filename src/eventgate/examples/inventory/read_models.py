"""The read models of the inventory service: the item list and the item details."""

from __future__ import annotations

from eventgate import Projection, RecordedEvent, Row

from .domain import (
    InventoryItemCreated,
    InventoryItemDeactivated,
    InventoryItemRenamed,
    ItemsCheckedInToInventory,
    ItemsRemovedFromInventory,
)

__all__ = ["INVENTORY_PROJECTIONS", "item_details", "item_list"]

item_list = Projection(
    "inventory_item_list",
    {"id": str, "name": str, "active": bool},
    indexes=[("active", "name", "id")],
)
"""Ids and names; deactivated items stay as rows with `active` false (a logical delete)."""

item_details = Projection(
    "inventory_item_details",
    {"id": str, "name": str, "current_count": int, "version": int, "active": bool},
)
"""Everything a client sees of one item, with the aggregate version behind its ETag."""


@item_list.on(InventoryItemCreated)
def _listed(row: Row | None, event: RecordedEvent) -> Row:
    return {"id": event.stream_id, "name": event.data["name"], "active": True}


@item_list.on(InventoryItemRenamed)
def _list_renamed(row: Row | None, event: RecordedEvent) -> Row | None:
    return None if row is None else {**row, "name": event.data["newName"]}


@item_list.on(InventoryItemDeactivated)
def _delisted(row: Row | None, event: RecordedEvent) -> Row | None:
    return None if row is None else {**row, "active": False}


@item_details.on(InventoryItemCreated)
def _created(row: Row | None, event: RecordedEvent) -> Row:
    return {
        "id": event.stream_id,
        "name": event.data["name"],
        "current_count": 0,
        "version": event.stream_version,
        "active": True,
    }


@item_details.on(InventoryItemRenamed)
def _renamed(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    return {**row, "name": event.data["newName"], "version": event.stream_version}


@item_details.on(InventoryItemDeactivated)
def _deactivated(row: Row | None, event: RecordedEvent) -> Row | None:
    return None if row is None else {**row, "active": False, "version": event.stream_version}


@item_details.on(ItemsCheckedInToInventory)
def _checked_in(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    count = row["current_count"] + event.data["count"]
    return {**row, "current_count": count, "version": event.stream_version}


@item_details.on(ItemsRemovedFromInventory)
def _removed(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    count = row["current_count"] - event.data["count"]
    return {**row, "current_count": count, "version": event.stream_version}


INVENTORY_PROJECTIONS = (item_list, item_details)
