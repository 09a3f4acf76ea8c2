"""The order saga through the real function runtime on real SQLite files: confirm, reject with
compensation, cancels at every stage, a deactivated item, redelivery and crashes between an
effect and its record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate import Context, FunctionEvent
from eventgate.bootstrap import System
from eventgate.examples.inventory.domain import DeactivateInventoryItem
from eventgate.examples.orders.domain import (
    CANCELLED,
    CONFIRMED,
    PENDING,
    REJECTED,
    CancelOrder,
)
from eventgate.examples.orders.functions import order_saga
from eventgate.examples.orders.read_models import order_details
from eventgate.functions import Function
from eventgate.functions.context import Services
from eventgate.functions.store import SQLiteFunctionStore

from .saga import (
    check_invariants,
    lines_of,
    new_item,
    order,
    orders_system,
    place,
    saga_running,
    settle,
)


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    async with orders_system(tmp_path / "data") as system:
        yield system


async def stock(system: System, item: str) -> int:
    return check_invariants(await system.store.read_all()).stock[item]


async def test_an_order_whose_lines_are_in_stock_is_confirmed(system: System) -> None:
    a, b = await new_item(system, 5), await new_item(system, 3)
    async with saga_running(system):
        placed = await place(system, (a, 2), (b, 1), (a, 3))
        [confirmed] = await settle(system, [placed])
    assert (confirmed.status, confirmed.reserved, confirmed.reason) == (CONFIRMED, {0, 1, 2}, None)
    assert (await stock(system, a), await stock(system, b)) == (0, 2)
    events = await system.store.read_all()
    removals = [e for e in events if e.type == "ItemsRemovedFromInventory"]
    order_events = {e.id: e for e in events if e.stream_id == placed}
    for removal in removals:  # each caused by an event of the order, in its correlation
        cause = order_events[removal.metadata["causationId"]]
        assert removal.metadata["function"] == "order_saga"
        assert removal.metadata["correlationId"] == cause.metadata["correlationId"]


async def test_a_line_out_of_stock_rejects_the_order_and_gives_back_what_was_reserved(
    system: System,
) -> None:
    a, b = await new_item(system, 5), await new_item(system, 0)
    async with saga_running(system):
        placed = await place(system, (a, 2), (b, 1), (a, 1))
        [rejected] = await settle(system, [placed])
    assert rejected.status == REJECTED
    assert rejected.reason == "cannot remove 1 items: only 0 in stock"
    assert (rejected.reserved, rejected.refused, rejected.released) == ({0}, {1}, {0})
    assert (await stock(system, a), await stock(system, b)) == (5, 0)


async def test_an_unknown_item_rejects_the_order(system: System) -> None:
    a = await new_item(system, 5)
    missing = "00000000-0000-4000-8000-000000000000"
    async with saga_running(system):
        placed = await place(system, (a, 1), (missing, 1))
        [rejected] = await settle(system, [placed])
    assert (rejected.status, rejected.reason) == (REJECTED, f"no inventory item {missing}")
    assert await stock(system, a) == 5


async def test_cancelling_a_confirmed_order_releases_every_line(system: System) -> None:
    a, b = await new_item(system, 5), await new_item(system, 3)
    async with saga_running(system):
        placed = await place(system, (a, 2), (b, 3))
        await settle(system, [placed])
        await system.commands.execute(CancelOrder(placed))
        [cancelled] = await settle(system, [placed])
    assert (cancelled.status, cancelled.released) == (CANCELLED, {0, 1})
    assert (await stock(system, a), await stock(system, b)) == (5, 3)


async def test_an_order_cancelled_before_the_saga_ran_gives_back_its_first_line(
    system: System,
) -> None:
    a = await new_item(system, 5)
    placed = await place(system, (a, 2), (a, 2))
    await system.commands.execute(CancelOrder(placed))
    async with saga_running(system):  # the OrderPlaced step reserves line 0 regardless
        [cancelled] = await settle(system, [placed])
    assert (cancelled.status, cancelled.reserved, cancelled.released) == (CANCELLED, {0}, {0})
    assert await stock(system, a) == 5


def gated(reached: asyncio.Event, gate: asyncio.Event, line: int) -> Function:
    """The saga, held before its step for OrderLineReserved(line) (setting `reached`) until
    `gate` is set."""

    async def handler(event: FunctionEvent, ctx: Context) -> None:
        if event.type == "OrderLineReserved" and event.data["line"] == line:
            reached.set()
            await gate.wait()
        await order_saga.handler(event, ctx)

    return Function(name=order_saga.name, handler=handler, on=order_saga.on)


@pytest.mark.parametrize("next_in_stock", [True, False])
async def test_a_cancel_racing_a_reservation_gives_back_everything_reserved(
    system: System, next_in_stock: bool
) -> None:
    a, b = await new_item(system, 5), await new_item(system, 4 if next_in_stock else 0)
    reached, gate = asyncio.Event(), asyncio.Event()
    async with saga_running(system, [gated(reached, gate, 0)]):
        placed = await place(system, (a, 2), (b, 3), (a, 1))
        async with asyncio.timeout(10):
            await reached.wait()  # line 0 is reserved
        await system.commands.execute(CancelOrder(placed))  # line 1 is not reserved yet
        gate.set()  # as of OrderLineReserved(0) the order was pending: reserve line 1
        [cancelled] = await settle(system, [placed])
    assert cancelled.status == CANCELLED and cancelled.reason is None
    if next_in_stock:  # reserved after the cancel, so released by its own step
        assert (cancelled.reserved, cancelled.released) == ({0, 1}, {0, 1})
    else:  # refused after the cancel: recorded on the line, nothing to give back
        assert (cancelled.reserved, cancelled.refused, cancelled.released) == ({0}, {1}, {0})
    assert 2 not in cancelled.reserved  # the saga went no further
    assert (await stock(system, a), await stock(system, b)) == (5, 4 if next_in_stock else 0)


async def test_a_release_to_a_deactivated_item_is_recorded_as_not_restocked(
    system: System,
) -> None:
    a, b = await new_item(system, 5), await new_item(system, 5)
    async with saga_running(system):
        placed = await place(system, (a, 2), (b, 1))
        await settle(system, [placed])
        await system.commands.execute(DeactivateInventoryItem(a))
        await system.commands.execute(CancelOrder(placed))
        [cancelled] = await settle(system, [placed])
    assert cancelled.released == {0, 1}
    events = await system.store.read_all()
    releases = [(e.data["line"], e.data["restocked"]) for e in events
                if e.type == "OrderLineReleased"]  # fmt: skip
    assert sorted(releases) == [(0, False), (1, True)]
    ledger = check_invariants(events)
    assert (ledger.stock[a], ledger.stock[b], ledger.written_off[a]) == (3, 5, 2)
    assert await system.functions.dead_letters() == []


async def test_the_read_model_shows_each_line_and_whether_the_order_settled(
    system: System,
) -> None:
    a, b = await new_item(system, 5), await new_item(system, 0)
    async with saga_running(system):
        confirmed = await place(system, (a, 1), (a, 1))
        rejected = await place(system, (a, 1), (b, 1), (a, 1))
        await settle(system, [confirmed, rejected])
    for projection in system.upsert.projections:
        await system.upsert.follow(projection, until=await system.store.head())
    rows = {row["id"]: row for row in await system.read_store.rows(order_details)}
    assert rows[confirmed]["status"] == CONFIRMED and rows[confirmed]["settled"] is True
    assert [line["state"] for line in lines_of(rows[confirmed])] == ["reserved", "reserved"]
    row = rows[rejected]
    assert (row["status"], row["reason"], row["settled"]) == (
        REJECTED,
        "cannot remove 1 items: only 0 in stock",
        True,
    )
    assert lines_of(row) == [
        {"item": a, "count": 1, "state": "released"},
        {"item": b, "count": 1, "state": "refused"},
        {"item": a, "count": 1, "state": "unreserved"},
    ]
    assert row["version"] == len([e for e in await system.store.read_stream(rejected)])


async def mixed_orders(system: System) -> list[str]:
    """Orders that end in each way: confirmed, rejected, cancelled pending and confirmed."""
    a, b, empty = await new_item(system, 20), await new_item(system, 20), await new_item(system, 0)
    cancelled_early = await place(system, (a, 1), (b, 2))
    await system.commands.execute(CancelOrder(cancelled_early))
    placed = [
        cancelled_early,
        await place(system, (a, 2), (b, 1)),
        await place(system, (a, 1), (empty, 1), (b, 1)),
        await place(system, (b, 3), (a, 3)),
    ]
    await settle(system, placed[1:2])
    await system.commands.execute(CancelOrder(placed[1]))
    return placed


async def test_redelivering_every_order_event_changes_nothing(
    system: System, tmp_path: Path
) -> None:
    async with saga_running(system):
        placed = await mixed_orders(system)
        await settle(system, placed)
        await asyncio.sleep(0.3)  # let the worker finish its last steps and commit
    before = await system.store.read_all()
    check_invariants(before)
    forgetful = await SQLiteFunctionStore.open(tmp_path / "no-records.sqlite")
    try:
        for functions in (system.functions, forgetful):
            # delivered again with whatever effect records the runtime kept, then with none
            # at all: the command ids alone keep every effect once (the one refusal here,
            # for lack of stock in `empty`, stays a refusal: that item never gets stock)
            services = Services(system.store, system.commands, functions, tmp_path)
            for event in before:
                if order_saga.wants(event.type):
                    await order_saga(event, Context(order_saga.name, event, 2, services))
    finally:
        await forgetful.close()
    assert await system.store.read_all() == before


async def test_a_crash_between_each_effect_and_its_record_repeats_no_effect(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ctx.once record is lost the first time (as if the process died right after the
    effect): the attempt fails, is retried, runs the effect again with the same command id,
    and the command handler answers it from the stream instead of applying it twice."""
    record = system.functions.record_effect
    lost: set[tuple[str, str]] = set()

    async def crash_first(function: str, event_id: str, name: str, result: object) -> None:
        if (event_id, name) not in lost:
            lost.add((event_id, name))
            raise ConnectionError(f"died before recording {name}")
        await record(function, event_id, name, result)

    monkeypatch.setattr(system.functions, "record_effect", crash_first)
    fast = Function(
        name=order_saga.name, handler=order_saga.handler, on=order_saga.on, retries=50,
        backoff=0.001, max_backoff=0.002,
    )  # fmt: skip
    async with saga_running(system, [fast]):
        placed = await mixed_orders(system)
        orders = await settle(system, placed)
    assert [o.status for o in orders] == [CANCELLED, CANCELLED, REJECTED, CONFIRMED]
    assert len(lost) > 20  # every effect of every step was lost once
    check_invariants(await system.store.read_all())
    assert await system.functions.dead_letters() == []


async def test_an_order_stays_pending_while_its_saga_has_not_run(system: System) -> None:
    a = await new_item(system, 5)
    placed = await place(system, (a, 1))
    pending = await order(system, placed)
    assert (pending.status, pending.awaiting, pending.settled) == (PENDING, 0, False)
