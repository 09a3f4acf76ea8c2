"""The orders domain: commands, events and the Order aggregate, the saga's process manager.

An order's lines are reserved one after another by the `order_saga` function (see
`functions.py`), which reports each outcome back with `RecordReservation`; every decision -
reserve the next line, confirm, reject, keep a late reservation so that it can be given back -
is taken here, one command at a time on the order's stream. State that the saga reads:

- `awaiting`: the line whose reservation is under way (the saga was asked to reserve it and
  has not reported yet), or None;
- `held`: lines reserved and not yet released - stock the order holds;
- `status`: pending, then confirmed, rejected or cancelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from msgspec import Meta

from eventgate import Aggregate, Command, Event, InvalidCommand, RuleViolation

__all__ = [
    "CANCELLED",
    "COMMANDS",
    "CONFIRMED",
    "EVENTS",
    "MAX_LINES",
    "PENDING",
    "REJECTED",
    "UUID_PATTERN",
    "CancelOrder",
    "Order",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderLine",
    "OrderLineRefused",
    "OrderLineReleased",
    "OrderLineReserved",
    "OrderPlaced",
    "OrderRejected",
    "PlaceOrder",
    "RecordRelease",
    "RecordReservation",
]

MAX_LINES = 50

PENDING, CONFIRMED, REJECTED, CANCELLED = "pending", "confirmed", "rejected", "cancelled"

UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
ItemId = Annotated[str, Meta(pattern=UUID_PATTERN)]
"""An inventory item's id as the inventory API makes them (a lowercase UUID), so that an
order cannot name another kind of stream (an integration event stream, say)."""
Count = Annotated[int, Meta(gt=0)]


# -- commands ---------------------------------------------------------------------------


# The field is `item`, not `item_id`: eventgate renames only a body's top-level keys from
# camelCase, so a nested `item_id` would have to be sent as "item_id" (while its OpenAPI schema
# and error messages say "itemId"); a one-word name is spelled the same both ways.
@dataclass(frozen=True)
class OrderLine:
    """`count` units of the inventory item whose id is `item`."""

    item: ItemId
    count: Count


@dataclass(frozen=True)
class PlaceOrder(Command):
    lines: Annotated[tuple[OrderLine, ...], Meta(min_length=1, max_length=MAX_LINES)]
    creates: ClassVar[bool] = True


@dataclass(frozen=True)
class CancelOrder(Command):
    pass


@dataclass(frozen=True)
class RecordReservation(Command):
    """The saga's report: reserving `line` succeeded (`ok`) or was refused for `reason`."""

    line: int
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class RecordRelease(Command):
    """The saga's report: `line` was given back (`restocked` false when its item could not
    take the stock back any more: it was deactivated meanwhile)."""

    line: int
    restocked: bool = True


COMMANDS: tuple[type[Command], ...] = (PlaceOrder, CancelOrder, RecordReservation, RecordRelease)


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderPlaced(Event):
    id: str
    lines: list[dict[str, Any]]  # [{"item": id, "count": n}]: stored as JSON as it is


@dataclass(frozen=True)
class OrderLineReserved(Event):
    id: str
    line: int


@dataclass(frozen=True)
class OrderConfirmed(Event):
    outcome = "confirmed"
    id: str


@dataclass(frozen=True)
class OrderRejected(Event):
    outcome = "rejected"
    id: str
    line: int
    reason: str


@dataclass(frozen=True)
class OrderLineRefused(Event):
    """A line's reservation was refused after the order was cancelled: nothing to give
    back, but the line's outcome is known (so the order is visibly settled)."""

    id: str
    line: int
    reason: str


@dataclass(frozen=True)
class OrderCancelled(Event):
    id: str


@dataclass(frozen=True)
class OrderLineReleased(Event):
    id: str
    line: int
    restocked: bool


EVENTS: tuple[type[Event], ...] = (
    OrderPlaced,
    OrderLineReserved,
    OrderConfirmed,
    OrderRejected,
    OrderLineRefused,
    OrderCancelled,
    OrderLineReleased,
)


# -- rules ------------------------------------------------------------------------------


def _valid_lines(lines: object) -> list[dict[str, Any]]:
    if not isinstance(lines, tuple | list) or not 1 <= len(lines) <= MAX_LINES:
        raise InvalidCommand(f"an order needs 1 to {MAX_LINES} lines")
    valid = []
    for line in lines:
        if not isinstance(line, OrderLine):
            raise InvalidCommand("every line must be an OrderLine")
        if not isinstance(line.item, str) or not re.match(UUID_PATTERN, line.item):
            raise InvalidCommand("every line needs an inventory item id (a lowercase UUID)")
        count = line.count
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            raise InvalidCommand("every line needs a positive count")
        valid.append({"item": line.item, "count": count})
    return valid


class Order(Aggregate):
    """An order of inventory items whose lines are reserved one by one; see the module."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.status = ""
        self.lines: list[tuple[str, int]] = []
        self.awaiting: int | None = None
        self.reserved: set[int] = set()
        self.refused: set[int] = set()
        self.released: set[int] = set()
        self.reason: str | None = None

    @property
    def held(self) -> list[int]:
        """Lines reserved and not released, in order: the stock this order holds."""
        return sorted(self.reserved - self.released)

    @property
    def settled(self) -> bool:
        """Nothing more will happen unless someone cancels: no reservation under way, and a
        rejected or cancelled order holds no stock."""
        if self.status == CONFIRMED:
            return True
        return self.status in (REJECTED, CANCELLED) and self.awaiting is None and not self.held

    def handle(self, command: Command) -> None:
        match command:
            case PlaceOrder(lines=lines):
                self.record(OrderPlaced(self.id, _valid_lines(lines)))
            case CancelOrder():
                if self.status in (PENDING, CONFIRMED):
                    self.record(OrderCancelled(self.id))
            case RecordReservation(line=line, ok=ok, reason=reason):
                self._reservation(self._valid_line(line), ok, reason or "refused")
            case RecordRelease(line=line, restocked=restocked):
                self._release(self._valid_line(line), restocked)
            case _:
                raise InvalidCommand(f"Order does not handle {type(command).__name__}")

    def _reservation(self, line: int, ok: bool, reason: str) -> None:
        if line in self.reserved or line in self.refused:
            return  # reported already: nothing new
        if line != self.awaiting:
            raise RuleViolation(f"line {line} of order {self.id} is not being reserved")
        if ok:  # even when cancelled: the stock is held now and must be given back
            self.record(OrderLineReserved(self.id, line))
            if self.status == PENDING and len(self.reserved) == len(self.lines):
                self.record(OrderConfirmed(self.id))
        elif self.status == PENDING:
            self.record(OrderRejected(self.id, line, reason))
        else:
            self.record(OrderLineRefused(self.id, line, reason))

    def _release(self, line: int, restocked: bool) -> None:
        if line in self.released:
            return
        if line not in self.reserved:
            raise RuleViolation(f"line {line} of order {self.id} is not reserved")
        if self.status not in (REJECTED, CANCELLED):
            raise RuleViolation(f"order {self.id} is {self.status}: its lines stay reserved")
        self.record(OrderLineReleased(self.id, line, restocked))

    def _valid_line(self, line: object) -> int:
        if isinstance(line, bool) or not isinstance(line, int):
            raise InvalidCommand("line must be an integer")
        if not 0 <= line < len(self.lines):
            raise InvalidCommand(f"order {self.id} has no line {line}")
        return line

    def apply(self, event: Event) -> None:
        match event:
            case OrderPlaced(lines=lines):
                self.status = PENDING
                self.lines = [(line["item"], line["count"]) for line in lines]
                self.awaiting = 0
            case OrderLineReserved(line=line):
                self.reserved.add(line)
                following = line + 1
                pending = self.status == PENDING and following < len(self.lines)
                self.awaiting = following if pending else None
            case OrderConfirmed():
                self.status = CONFIRMED
            case OrderRejected(line=line, reason=reason):
                self.refused.add(line)
                self.status, self.reason, self.awaiting = REJECTED, reason, None
            case OrderLineRefused(line=line):
                self.refused.add(line)
                self.awaiting = None
            case OrderCancelled():
                self.status = CANCELLED  # a reservation under way still reports
            case OrderLineReleased(line=line):
                self.released.add(line)
