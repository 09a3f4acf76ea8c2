"""The saga's invariants for hypothesis-generated orders, cancels (at random moments), stock
check-ins and deactivations racing the saga: once everything settles, no order is pending,
no line was reserved or released twice, and every item's stock is what was checked in less
the lines of confirmed orders (and of released lines its deactivation wrote off), never
having gone below zero."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eventgate.bootstrap import System
from eventgate.examples.inventory.domain import CheckInItemsToInventory, DeactivateInventoryItem
from eventgate.examples.orders.domain import PENDING, CancelOrder

from .saga import check_invariants, new_item, orders_system, place, saga_running, settle

delays = st.sampled_from([None, 0, 1, 3, 10])  # ms after the start; None: never
lines = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 4)), min_size=1, max_size=4)
orders = st.lists(st.tuples(lines, delays), min_size=1, max_size=6)  # (lines, cancel after)
restocks = st.lists(st.tuples(st.integers(0, 2), st.integers(1, 5), delays), max_size=3)


@settings(max_examples=25, deadline=None)
@given(
    stock=st.lists(st.integers(0, 8), min_size=1, max_size=3),
    plan=orders,
    restock=restocks,
    deactivate=delays,
)
def test_settled_orders_account_for_every_unit_of_stock(
    stock: list[int],
    plan: list[tuple[list[tuple[int, int]], int | None]],
    restock: list[tuple[int, int, int | None]],
    deactivate: int | None,
) -> None:
    asyncio.run(scenario(stock, plan, restock, deactivate))


async def scenario(
    stock: list[int],
    plan: list[tuple[list[tuple[int, int]], int | None]],
    restock: list[tuple[int, int, int | None]],
    deactivate: int | None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with orders_system(Path(tmp)) as system, saga_running(system):
            items = [await new_item(system, n) for n in stock]

            async def later(delay: int | None) -> bool:
                if delay is None:
                    return False
                await asyncio.sleep(delay / 1000)
                return True

            async def order(order_lines: list[tuple[int, int]], cancel: int | None) -> str:
                placed = await place(system, *((items[i % len(items)], n) for i, n in order_lines))
                if await later(cancel):
                    await system.commands.execute(CancelOrder(placed))
                return placed

            async def check_in(item: int, count: int, delay: int | None) -> None:
                if await later(delay):
                    await checked_in(system, items[item % len(items)], count)

            async def deactivation() -> None:
                if await later(deactivate):
                    await system.commands.execute(DeactivateInventoryItem(items[-1]))

            placed, *_ = await asyncio.gather(
                asyncio.gather(*(order(lines, cancel) for lines, cancel in plan)),
                *(check_in(*r) for r in restock),
                deactivation(),
            )
            settled = await settle(system, placed)
            assert all(o.status != PENDING for o in settled)
            check_invariants(await system.store.read_all())


async def checked_in(system: System, item: str, count: int) -> None:
    try:
        await system.commands.execute(CheckInItemsToInventory(item, count))
    except Exception as e:  # the item may have been deactivated meanwhile
        assert "deactivated" in str(e)
