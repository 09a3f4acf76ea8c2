"""The Order aggregate: given events, when a command, then events or an error."""

from __future__ import annotations

import pytest

from eventgate import Command, Event, InvalidCommand, RuleViolation
from eventgate.examples.orders.domain import (
    CANCELLED,
    CONFIRMED,
    MAX_LINES,
    PENDING,
    REJECTED,
    CancelOrder,
    Order,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderLineRefused,
    OrderLineReleased,
    OrderLineReserved,
    OrderPlaced,
    OrderRejected,
    PlaceOrder,
    RecordRelease,
    RecordReservation,
)

ID = "order-1"
A, B = "a0000000-0000-4000-8000-000000000001", "b0000000-0000-4000-8000-000000000002"
PLACED = OrderPlaced(ID, [{"item": A, "count": 2}, {"item": B, "count": 1}])
RESERVED_0 = OrderLineReserved(ID, 0)
RESERVED_1 = OrderLineReserved(ID, 1)
CONFIRMED_ = OrderConfirmed(ID)
CANCELLED_ = OrderCancelled(ID)


def replay(given: list[Event]) -> Order:
    return Order.replay(ID, given)


def when(given: list[Event], command: Command) -> list[Event]:
    order = replay(given)
    order.handle(command)
    return order.collect_pending()


def test_placing_records_the_lines_and_awaits_the_first() -> None:
    lines = (OrderLine(A, 2), OrderLine(B, 1))
    assert when([], PlaceOrder(ID, lines)) == [PLACED]
    order = replay([PLACED])
    assert (order.status, order.awaiting, order.held, order.settled) == (PENDING, 0, [], False)


@pytest.mark.parametrize(
    "lines",
    [
        (),
        tuple(OrderLine(A, 1) for _ in range(MAX_LINES + 1)),
        (OrderLine(A, 0),),
        (OrderLine(A, -1),),
        (OrderLine(A, True),),
        (OrderLine("not-a-uuid", 1),),
        (OrderLine(A.upper(), 1),),
    ],
)
def test_an_order_needs_1_to_50_lines_of_items_with_positive_counts(
    lines: tuple[OrderLine, ...],
) -> None:
    with pytest.raises(InvalidCommand):
        when([], PlaceOrder(ID, lines))


def test_fifty_lines_are_fine() -> None:
    [placed] = when([], PlaceOrder(ID, tuple(OrderLine(A, 1) for _ in range(MAX_LINES))))
    assert len(placed.lines) == MAX_LINES  # type: ignore[attr-defined]


def test_a_reserved_line_makes_the_next_one_awaited() -> None:
    assert when([PLACED], RecordReservation(ID, 0, ok=True)) == [RESERVED_0]
    order = replay([PLACED, RESERVED_0])
    assert (order.awaiting, order.held) == (1, [0])


def test_reserving_the_last_line_confirms_the_order() -> None:
    assert when([PLACED, RESERVED_0], RecordReservation(ID, 1, ok=True)) == [
        RESERVED_1,
        CONFIRMED_,
    ]
    order = replay([PLACED, RESERVED_0, RESERVED_1, CONFIRMED_])
    assert (order.status, order.awaiting, order.settled) == (CONFIRMED, None, True)


def test_a_refused_line_rejects_a_pending_order_with_the_reason() -> None:
    rejected = OrderRejected(ID, 1, "only 0 in stock")
    assert when([PLACED, RESERVED_0], RecordReservation(ID, 1, False, "only 0 in stock")) == [
        rejected
    ]
    order = replay([PLACED, RESERVED_0, rejected])
    assert (order.status, order.reason, order.awaiting, order.held) == (
        REJECTED,
        "only 0 in stock",
        None,
        [0],
    )
    assert not order.settled  # line 0 is still held


def test_a_report_is_recorded_once() -> None:
    assert when([PLACED, RESERVED_0], RecordReservation(ID, 0, ok=True)) == []
    rejected = OrderRejected(ID, 0, "no")
    assert when([PLACED, rejected], RecordReservation(ID, 0, ok=True)) == []


def test_only_the_awaited_line_can_be_reported() -> None:
    with pytest.raises(RuleViolation):
        when([PLACED], RecordReservation(ID, 1, ok=True))
    with pytest.raises(InvalidCommand):
        when([PLACED], RecordReservation(ID, 2, ok=True))


def test_cancelling_a_pending_or_confirmed_order_records_it() -> None:
    assert when([PLACED], CancelOrder(ID)) == [CANCELLED_]
    assert when([PLACED, RESERVED_0, RESERVED_1, CONFIRMED_], CancelOrder(ID)) == [CANCELLED_]


def test_cancelling_a_rejected_or_cancelled_order_records_nothing() -> None:
    assert when([PLACED, OrderRejected(ID, 0, "no")], CancelOrder(ID)) == []
    assert when([PLACED, CANCELLED_], CancelOrder(ID)) == []


def test_a_reservation_that_lands_after_a_cancel_is_kept_to_be_given_back() -> None:
    given = [PLACED, CANCELLED_]
    assert when(given, RecordReservation(ID, 0, ok=True)) == [RESERVED_0]
    order = replay([*given, RESERVED_0])
    assert (order.status, order.awaiting, order.held) == (CANCELLED, None, [0])


def test_a_refusal_after_a_cancel_is_recorded_on_the_line_only() -> None:
    given = [PLACED, RESERVED_0, CANCELLED_]
    refused = OrderLineRefused(ID, 1, "no stock")
    assert when(given, RecordReservation(ID, 1, False, "no stock")) == [refused]
    order = replay([*given, refused])
    assert (order.status, order.reason, order.awaiting, order.held) == (CANCELLED, None, None, [0])


def test_a_held_line_of_a_cancelled_or_rejected_order_is_released_once() -> None:
    given = [PLACED, RESERVED_0, CANCELLED_]
    assert when(given, RecordRelease(ID, 0)) == [OrderLineReleased(ID, 0, True)]
    assert when([*given, OrderLineReleased(ID, 0, True)], RecordRelease(ID, 0)) == []
    rejected = [PLACED, RESERVED_0, OrderRejected(ID, 1, "no")]
    assert when(rejected, RecordRelease(ID, 0, restocked=False)) == [
        OrderLineReleased(ID, 0, False)
    ]
    order = replay([*rejected, OrderLineReleased(ID, 0, False)])
    assert (order.held, order.settled) == ([], True)


def test_lines_of_a_live_order_and_unreserved_lines_cannot_be_released() -> None:
    with pytest.raises(RuleViolation):
        when([PLACED, RESERVED_0], RecordRelease(ID, 0))  # still pending
    with pytest.raises(RuleViolation):
        when([PLACED, RESERVED_0, RESERVED_1, CONFIRMED_], RecordRelease(ID, 1))
    with pytest.raises(RuleViolation):
        when([PLACED, RESERVED_0, CANCELLED_], RecordRelease(ID, 1))  # never reserved


def test_a_cancelled_order_is_settled_once_nothing_is_held_or_awaited() -> None:
    assert not replay([PLACED, CANCELLED_]).settled  # line 0's reservation is under way
    refused = OrderLineRefused(ID, 0, "no")
    assert replay([PLACED, CANCELLED_, refused]).settled


def test_events_survive_their_stored_form() -> None:
    for event in [PLACED, RESERVED_0, OrderRejected(ID, 1, "x"), OrderLineReleased(ID, 0, False)]:
        assert type(event).from_data(event.to_data()) == event
