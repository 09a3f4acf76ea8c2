"""The order saga: one function that reserves an order's lines and gives stock back.

Choreography with the Order aggregate as the process manager. `order_saga` runs on the
order's events, one at a time in stream order (one function, so one lane per order). Each
step decides only from its event and `ctx.history()` - the order's stream up to that event,
the same list on every delivery - by replaying the Order aggregate to that point; all
deciding is the aggregate's. A step's effects are commands sent with `ctx.send(key=...)`.

| event | as of the event | the step |
|---|---|---|
| `OrderPlaced` | | reserve line 0 |
| `OrderLineReserved(i)` | pending, i not the last line | reserve line i+1 |
| `OrderLineReserved(i)` | cancelled (or rejected) | release line i |
| `OrderRejected`, `OrderCancelled` | | release every line held |

Reserve line i: `RemoveItemsFromInventory(item, count)` inside `ctx.once("reserve-outcome:i")`,
whose action turns the inventory's refusals (not enough stock, deactivated or unknown item)
into `{"ok": false, "reason": ...}`; then `RecordReservation(order, i, ok, reason)` to the
order. Release line i: `CheckInItemsToInventory(item, count)` inside
`ctx.once("release-outcome:i")` (a deactivated item refuses: recorded as not restocked, never
retried into a loop), then `RecordRelease(order, i, restocked)`.

Why nothing is reserved or released twice:

- Redelivery (after a crash, a lost lease, a retry): the step decides the same (same history),
  and every effect is named: `ctx.once` returns the recorded outcome, and a command sent with
  the same key has the same command id, which the command handler finds in the target stream
  and does not apply again - also when a crash fell between the append and the effect record.
- A refusal is recorded as an outcome: a retry does not turn it into a later success.
- Two steps never release the same line: `OrderRejected`/`OrderCancelled` release the lines
  held as of that event; `OrderLineReserved(i)` releases i only when it comes after the cancel,
  i.e. i was not held as of the cancel. Reservations are sequential (one line `awaiting` at a
  time), so at most one is under way when an order is cancelled, and its report still comes:
  the aggregate records it (`OrderLineReserved`, to be released, or `OrderLineRefused`).
- Deciding from the stream *as of the event*, not from the order's current state, is what
  makes a redelivery decide the same: a step that reserved, crashed and then saw a cancel
  would otherwise skip its report and leak the stock.
- The aggregate checks every report (`RecordReservation` for the awaited line only, once;
  `RecordRelease` of a held line of a rejected or cancelled order only, once).
"""

from __future__ import annotations

from typing import Any

from eventgate import (
    AggregateNotFound,
    Context,
    Event,
    FunctionEvent,
    InvalidCommand,
    RuleViolation,
    function,
)
from eventgate.examples.inventory.domain import CheckInItemsToInventory, RemoveItemsFromInventory

from .domain import (
    CANCELLED,
    EVENTS,
    PENDING,
    REJECTED,
    Order,
    OrderCancelled,
    OrderLineReserved,
    OrderPlaced,
    OrderRejected,
    RecordRelease,
    RecordReservation,
)

__all__ = ["order_as_of", "order_saga"]

_CLASSES: dict[str, type[Event]] = {cls.type_name: cls for cls in EVENTS}
_TRIGGERS: list[type[Event]] = [OrderPlaced, OrderLineReserved, OrderRejected, OrderCancelled]
_REFUSALS = (RuleViolation, AggregateNotFound, InvalidCommand)


def order_as_of(stream_id: str, history: list[FunctionEvent]) -> Order:
    """The Order aggregate as of the last event of `history` (its stream, oldest first)."""
    return Order.replay(stream_id, (_CLASSES[e.type].from_data(e.data) for e in history))


@function(
    on=[cls.type_name for cls in _TRIGGERS],
    retries=20,
    timeout=30.0,
    concurrency=16,
    backoff=0.2,
    max_backoff=5.0,
)
async def order_saga(event: FunctionEvent, ctx: Context) -> None:
    """One step of an order's saga; see the module."""
    order = order_as_of(event.stream_id, await ctx.history())
    if event.type in (OrderPlaced.type_name, OrderLineReserved.type_name):
        line = event.data.get("line")
        if line is not None and order.status in (CANCELLED, REJECTED):
            await _release(ctx, order, line)  # reserved after the order ended: give it back
        elif order.status == PENDING and order.awaiting is not None:
            await _reserve(ctx, order, order.awaiting)
    else:  # OrderRejected, OrderCancelled
        for line in order.held:
            await _release(ctx, order, line)


async def _reserve(ctx: Context, order: Order, line: int) -> None:
    item, count = order.lines[line]

    async def attempt(_: str) -> dict[str, Any]:
        try:
            await ctx.send(RemoveItemsFromInventory(item, count), key=f"reserve:{line}")
        except AggregateNotFound:
            return {"ok": False, "reason": f"no inventory item {item}"}
        except _REFUSALS as refusal:
            return {"ok": False, "reason": str(refusal)}
        return {"ok": True, "reason": None}

    outcome = await ctx.once(f"reserve-outcome:{line}", attempt)
    report = RecordReservation(order.id, line, outcome["ok"], outcome["reason"])
    await ctx.send(report, key=f"report:{line}")
    ctx.logger.debug("order %s line %d reserved: %s", order.id, line, outcome)


async def _release(ctx: Context, order: Order, line: int) -> None:
    item, count = order.lines[line]

    async def attempt(_: str) -> dict[str, Any]:
        try:
            await ctx.send(CheckInItemsToInventory(item, count), key=f"release:{line}")
        except _REFUSALS as refusal:  # a deactivated item takes nothing back, ever
            ctx.logger.warning("order %s line %d not restocked: %s", order.id, line, refusal)
            return {"restocked": False}
        return {"restocked": True}

    outcome = await ctx.once(f"release-outcome:{line}", attempt)
    await ctx.send(RecordRelease(order.id, line, outcome["restocked"]), key=f"released:{line}")
