"""The inventory aggregate: given events, when a command, then events or an error."""

from __future__ import annotations

import pytest

from eventgate.domain.messages import Command, Event
from eventgate.errors import InvalidCommand, RuleViolation
from eventgate.examples.inventory.domain import (
    MAX_NAME_LENGTH,
    MAX_STOCK,
    CheckInItemsToInventory,
    CreateInventoryItem,
    DeactivateInventoryItem,
    InventoryItem,
    InventoryItemCreated,
    InventoryItemDeactivated,
    InventoryItemRenamed,
    ItemsCheckedInToInventory,
    ItemsRemovedFromInventory,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)

ID = "item-1"
CREATED = InventoryItemCreated(ID, "widget")


def when(given: list[Event], command: Command) -> list[Event]:
    item = InventoryItem.replay(ID, given)
    item.handle(command)
    return item.collect_pending()


def test_creating_an_item_records_its_name() -> None:
    assert when([], CreateInventoryItem(ID, "widget")) == [CREATED]


@pytest.mark.parametrize("name", ["", "   ", "x" * (MAX_NAME_LENGTH + 1), None, 5])
def test_an_item_needs_a_non_empty_name_of_at_most_200_characters(name: object) -> None:
    with pytest.raises(InvalidCommand):
        when([], CreateInventoryItem(ID, name))  # type: ignore[arg-type]


def test_a_name_of_exactly_200_characters_is_fine() -> None:
    assert when([], CreateInventoryItem(ID, "x" * MAX_NAME_LENGTH))[0].name == "x" * 200  # type: ignore[attr-defined]


def test_renaming_records_the_new_name() -> None:
    assert when([CREATED], RenameInventoryItem(ID, "gadget")) == [
        InventoryItemRenamed(ID, "gadget")
    ]


def test_renaming_to_an_empty_name_is_invalid() -> None:
    with pytest.raises(InvalidCommand):
        when([CREATED], RenameInventoryItem(ID, ""))


def test_checking_in_adds_to_the_stock() -> None:
    assert when([CREATED], CheckInItemsToInventory(ID, 5)) == [ItemsCheckedInToInventory(ID, 5)]


@pytest.mark.parametrize("count", [0, -1, True, 1.5, "3", None])
def test_counts_must_be_positive_integers(count: object) -> None:
    for command in (CheckInItemsToInventory, RemoveItemsFromInventory):
        with pytest.raises(InvalidCommand):
            when([CREATED, ItemsCheckedInToInventory(ID, 10)], command(ID, count))  # type: ignore[arg-type]


def test_removing_what_is_in_stock_is_fine() -> None:
    given = [CREATED, ItemsCheckedInToInventory(ID, 5)]
    assert when(given, RemoveItemsFromInventory(ID, 5)) == [ItemsRemovedFromInventory(ID, 5)]


def test_removing_more_than_in_stock_is_rejected() -> None:
    given = [CREATED, ItemsCheckedInToInventory(ID, 5), ItemsRemovedFromInventory(ID, 3)]
    with pytest.raises(RuleViolation, match="only 2 in stock"):
        when(given, RemoveItemsFromInventory(ID, 3))


def test_deactivating_records_the_deactivation() -> None:
    assert when([CREATED], DeactivateInventoryItem(ID)) == [InventoryItemDeactivated(ID)]


def test_deactivating_twice_is_a_no_op() -> None:
    assert when([CREATED, InventoryItemDeactivated(ID)], DeactivateInventoryItem(ID)) == []


@pytest.mark.parametrize(
    "command",
    [
        RenameInventoryItem(ID, "gadget"),
        CheckInItemsToInventory(ID, 1),
        RemoveItemsFromInventory(ID, 1),
    ],
)
def test_a_deactivated_item_takes_no_further_commands(command: Command) -> None:
    with pytest.raises(RuleViolation, match="deactivated"):
        when([CREATED, ItemsCheckedInToInventory(ID, 5), InventoryItemDeactivated(ID)], command)


def test_replay_rebuilds_state_and_version() -> None:
    item = InventoryItem.replay(
        ID, [CREATED, ItemsCheckedInToInventory(ID, 7), InventoryItemRenamed(ID, "gadget")]
    )
    assert (item.name, item.count, item.active, item.version) == ("gadget", 7, True, 3)


def test_events_are_stored_with_camel_case_fields_under_stable_names() -> None:
    event = InventoryItemRenamed(ID, "gadget")
    assert event.type_name == "InventoryItemRenamed"
    assert event.to_data() == {"id": ID, "newName": "gadget"}
    assert InventoryItemRenamed.from_data({"id": ID, "newName": "gadget"}) == event


def test_stock_can_never_pass_its_declared_maximum() -> None:
    full = [CREATED, ItemsCheckedInToInventory(ID, MAX_STOCK)]
    with pytest.raises(RuleViolation, match=f"at most {MAX_STOCK}"):
        when(full, CheckInItemsToInventory(ID, 1))
    with pytest.raises(InvalidCommand):
        when([CREATED], CheckInItemsToInventory(ID, MAX_STOCK + 1))
    assert when([CREATED], CheckInItemsToInventory(ID, MAX_STOCK)) == full[1:]
