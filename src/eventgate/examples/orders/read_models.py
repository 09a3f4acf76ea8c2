"""The orders read model: one row per order, for both the list and the item.

Read-model columns are scalars, so an order's lines are one JSON text column: a list of
`{"item": id, "count": n, "state": s}` where `state` is one of

| state | the line |
|---|---|
| `unreserved` | is not reserved (not yet, or never: the order ended first) |
| `reserving` | is being reserved by the saga now |
| `reserved` | holds its stock |
| `refused` | could not be reserved (the order's `reason` says why, when it rejected it) |
| `released` | held stock and gave it back |
| `written-off` | was released, but its item had been deactivated meanwhile: not restocked |

`settled` is true once nothing more will happen to the order unless it is cancelled.
"""

from __future__ import annotations

import json
from typing import Any

from eventgate import Projection, RecordedEvent, Row

from .domain import (
    CANCELLED,
    CONFIRMED,
    PENDING,
    REJECTED,
    OrderCancelled,
    OrderConfirmed,
    OrderLineRefused,
    OrderLineReleased,
    OrderLineReserved,
    OrderPlaced,
    OrderRejected,
)

__all__ = ["ORDER_PROJECTIONS", "order_details"]

order_details = Projection(
    "order_details",
    {
        "id": str,
        "status": str,
        "reason": str | None,  # None unless rejected
        "lines": str,  # JSON text
        "settled": bool,
        "version": int,
    },
    indexes=[("status", "id")],
)
"""Everything a client sees of an order, with the aggregate version behind its ETag."""


def _lines(row: Row) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = json.loads(row["lines"])
    return lines


def _row(row: Row, event: RecordedEvent, lines: list[dict[str, Any]], **changes: Any) -> Row:
    new = {**row, **changes, "version": event.stream_version}
    new["lines"] = json.dumps(lines, separators=(",", ":"))
    states = {line["state"] for line in lines}
    if new["status"] == CONFIRMED:
        new["settled"] = True
    else:
        open_states = {"reserving", "reserved"}
        new["settled"] = new["status"] in (REJECTED, CANCELLED) and not states & open_states
    return new


@order_details.on(OrderPlaced)
def _placed(row: Row | None, event: RecordedEvent) -> Row:
    lines = [{**line, "state": "unreserved"} for line in event.data["lines"]]
    lines[0]["state"] = "reserving"
    new = {"id": event.stream_id, "status": PENDING, "reason": None, "settled": False}
    return _row(new, event, lines)


@order_details.on(OrderLineReserved)
def _reserved(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    lines, line = _lines(row), event.data["line"]
    lines[line]["state"] = "reserved"
    if row["status"] == PENDING and line + 1 < len(lines):
        lines[line + 1]["state"] = "reserving"
    return _row(row, event, lines)


@order_details.on(OrderConfirmed)
def _confirmed(row: Row | None, event: RecordedEvent) -> Row | None:
    return None if row is None else _row(row, event, _lines(row), status=CONFIRMED)


@order_details.on(OrderRejected)
def _rejected(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    lines = _lines(row)
    lines[event.data["line"]]["state"] = "refused"
    return _row(row, event, lines, status=REJECTED, reason=event.data["reason"])


@order_details.on(OrderLineRefused)
def _refused(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    lines = _lines(row)
    lines[event.data["line"]]["state"] = "refused"
    return _row(row, event, lines)


@order_details.on(OrderCancelled)
def _cancelled(row: Row | None, event: RecordedEvent) -> Row | None:
    return None if row is None else _row(row, event, _lines(row), status=CANCELLED)


@order_details.on(OrderLineReleased)
def _released(row: Row | None, event: RecordedEvent) -> Row | None:
    if row is None:
        return None
    lines = _lines(row)
    lines[event.data["line"]]["state"] = "released" if event.data["restocked"] else "written-off"
    return _row(row, event, lines)


ORDER_PROJECTIONS = (order_details,)
