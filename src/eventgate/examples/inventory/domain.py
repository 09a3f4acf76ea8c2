"""The m-r inventory domain: commands, events and the InventoryItem aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from msgspec import Meta

from eventgate import Aggregate, Command, Event, InvalidCommand, RuleViolation

__all__ = [
    "COMMANDS",
    "EVENTS",
    "MAX_NAME_LENGTH",
    "MAX_STOCK",
    "CheckInItemsToInventory",
    "CreateInventoryItem",
    "DeactivateInventoryItem",
    "InventoryItem",
    "InventoryItemCreated",
    "InventoryItemDeactivated",
    "InventoryItemRenamed",
    "ItemsCheckedInToInventory",
    "ItemsRemovedFromInventory",
    "RemoveItemsFromInventory",
    "RenameInventoryItem",
]

MAX_NAME_LENGTH = 200
MAX_STOCK = 1_000_000_000
"""No item holds more: a check-in past it is refused (409), so no total can overflow."""

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
Count = Annotated[int, Meta(gt=0, le=MAX_STOCK)]


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateInventoryItem(Command):
    name: Name
    creates: ClassVar[bool] = True


@dataclass(frozen=True)
class RenameInventoryItem(Command):
    new_name: Name


@dataclass(frozen=True)
class DeactivateInventoryItem(Command):
    pass


@dataclass(frozen=True)
class CheckInItemsToInventory(Command):
    count: Count


@dataclass(frozen=True)
class RemoveItemsFromInventory(Command):
    count: Count


COMMANDS: tuple[type[Command], ...] = (
    CreateInventoryItem,
    RenameInventoryItem,
    DeactivateInventoryItem,
    CheckInItemsToInventory,
    RemoveItemsFromInventory,
)


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryItemCreated(Event):
    id: str
    name: str


@dataclass(frozen=True)
class InventoryItemRenamed(Event):
    id: str
    new_name: str


@dataclass(frozen=True)
class InventoryItemDeactivated(Event):
    id: str


@dataclass(frozen=True)
class ItemsCheckedInToInventory(Event):
    id: str
    count: int


@dataclass(frozen=True)
class ItemsRemovedFromInventory(Event):
    id: str
    count: int


EVENTS: tuple[type[Event], ...] = (
    InventoryItemCreated,
    InventoryItemRenamed,
    InventoryItemDeactivated,
    ItemsCheckedInToInventory,
    ItemsRemovedFromInventory,
)


# -- rules ------------------------------------------------------------------------------


def _valid_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidCommand("name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidCommand(f"name must be at most {MAX_NAME_LENGTH} characters")
    return name


def _valid_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_STOCK:
        raise InvalidCommand(f"count must be an integer from 1 to {MAX_STOCK}")
    return count


class InventoryItem(Aggregate):
    """A product type whose stock is checked in and removed; never below zero."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.active = False
        self.count = 0

    def handle(self, command: Command) -> None:
        match command:
            case CreateInventoryItem(name=name):
                self.record(InventoryItemCreated(self.id, _valid_name(name)))
            case DeactivateInventoryItem():
                if self.active:
                    self.record(InventoryItemDeactivated(self.id))
            case RenameInventoryItem(new_name=new_name):
                name = _valid_name(new_name)
                self._require_active()
                self.record(InventoryItemRenamed(self.id, name))
            case CheckInItemsToInventory(count=count):
                count = _valid_count(count)
                self._require_active()
                if self.count + count > MAX_STOCK:
                    raise RuleViolation(
                        f"cannot check in {count} items: {self.count} in stock, at most"
                        f" {MAX_STOCK} allowed"
                    )
                self.record(ItemsCheckedInToInventory(self.id, count))
            case RemoveItemsFromInventory(count=count):
                count = _valid_count(count)
                self._require_active()
                if count > self.count:
                    raise RuleViolation(f"cannot remove {count} items: only {self.count} in stock")
                self.record(ItemsRemovedFromInventory(self.id, count))
            case _:
                raise InvalidCommand(f"InventoryItem does not handle {type(command).__name__}")

    def apply(self, event: Event) -> None:
        match event:
            case InventoryItemCreated(name=name):
                self.name, self.active = name, True
            case InventoryItemRenamed(new_name=new_name):
                self.name = new_name
            case InventoryItemDeactivated():
                self.active = False
            case ItemsCheckedInToInventory(count=count):
                self.count += count
            case ItemsRemovedFromInventory(count=count):
                self.count -= count

    def _require_active(self) -> None:
        if not self.active:
            raise RuleViolation(f"inventory item {self.id} is deactivated")
