"""Helpers for the orders tests: a real system of the orders app with the saga running, and
the saga's invariants checked over the whole event log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventgate import RecordedEvent
from eventgate.bootstrap import System, function_worker, open_system
from eventgate.config import Settings
from eventgate.examples.inventory.domain import CheckInItemsToInventory, CreateInventoryItem
from eventgate.examples.orders import orders_app
from eventgate.examples.orders.domain import CONFIRMED, Order, OrderLine, PlaceOrder
from eventgate.examples.orders.functions import order_as_of, order_saga
from eventgate.functions import Function

FAST = {"heartbeat": 0.05, "ttl": 2.0}


@contextlib.asynccontextmanager
async def orders_system(data: Path) -> AsyncIterator[System]:
    system = await open_system(Settings(data_dir=data), orders_app())
    try:
        yield system
    finally:
        await system.close()


@contextlib.asynccontextmanager
async def saga_running(
    system: System, functions: Sequence[Function] = (order_saga,)
) -> AsyncIterator[None]:
    worker = function_worker(system, functions, **FAST)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def new_id() -> str:
    return str(uuid.uuid4())


async def new_item(system: System, stock: int, name: str = "widget") -> str:
    item = new_id()
    await system.commands.execute(CreateInventoryItem(item, name))
    if stock:
        await system.commands.execute(CheckInItemsToInventory(item, stock))
    return item


async def place(system: System, *lines: tuple[str, int]) -> str:
    order = new_id()
    await system.commands.execute(PlaceOrder(order, tuple(OrderLine(i, n) for i, n in lines)))
    return order


async def order(system: System, order_id: str) -> Order:
    loaded = await system.commands.load(Order, order_id)
    assert isinstance(loaded, Order)
    return loaded


async def settle(system: System, orders: Sequence[str], within: float = 20.0) -> list[Order]:
    """Wait until every order is settled (nothing more will happen to it); return them."""
    deadline = time.monotonic() + within
    while True:
        found = [await order(system, o) for o in orders]
        if all(o.settled for o in found):
            return found
        if time.monotonic() > deadline:
            stuck = [(o.id, o.status, o.awaiting, o.held) for o in found if not o.settled]
            raise AssertionError(f"orders did not settle: {stuck}")
        await asyncio.sleep(0.02)


@dataclass
class Ledger:
    """What the log says about stock: per item, the stock as folded from its stream and
    the stock moved by the saga per order."""

    stock: dict[str, int] = field(default_factory=dict)
    outside: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # not the saga's
    confirmed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    written_off: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    orders: dict[str, Order] = field(default_factory=dict)


def check_invariants(events: Sequence[RecordedEvent]) -> Ledger:
    """Every saga invariant over the whole log; returns the ledger for further checks.

    - every order is settled: confirmed, or rejected/cancelled holding nothing;
    - no inventory command was applied twice (each `commandId` once);
    - per order, the inventory removals it caused are exactly its reserved lines and the
      check-ins it caused exactly its restocked releases (count and quantity per item);
    - no item's stock ever went below zero, and each ends at what was checked in from
      outside the saga, less the lines of confirmed orders and the written-off lines.
    """
    streams: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        streams[event.stream_id].append(event)
    ledger = Ledger()
    owner: dict[str, str] = {}  # order event id -> order id
    for stream_id, stream in streams.items():
        if stream[0].type == "OrderPlaced":
            ledger.orders[stream_id] = order_as_of(stream_id, stream)
            owner.update((e.id, stream_id) for e in stream)

    inventory = [e for e in events if e.type in ("ItemsRemovedFromInventory",
                                                 "ItemsCheckedInToInventory")]  # fmt: skip
    repeated = [c for c, n in Counter(e.metadata["commandId"] for e in inventory).items() if n > 1]
    assert not repeated, f"inventory commands applied twice: {repeated}"

    removed: dict[str, Counter[str]] = defaultdict(Counter)  # order -> item -> count
    restocked: dict[str, Counter[str]] = defaultdict(Counter)
    removals: Counter[str] = Counter()
    checkins: Counter[str] = Counter()
    for event in inventory:
        caused_by = owner.get(event.metadata.get("causationId", ""))
        item, count = event.stream_id, event.data["count"]
        if caused_by is None:
            sign = 1 if event.type == "ItemsCheckedInToInventory" else -1
            ledger.outside[item] += sign * count
        elif event.type == "ItemsRemovedFromInventory":
            removed[caused_by][item] += count
            removals[caused_by] += 1
        else:
            restocked[caused_by][item] += count
            checkins[caused_by] += 1

    for order_id, o in ledger.orders.items():
        assert o.settled, (order_id, o.status, o.awaiting, o.held)
        reserved: Counter[str] = Counter()
        returned: Counter[str] = Counter()
        stream = streams[order_id]
        releases = {e.data["line"]: e.data["restocked"] for e in stream
                    if e.type == "OrderLineReleased"}  # fmt: skip
        for line in o.reserved:
            item, count = o.lines[line]
            reserved[item] += count
            if o.status == CONFIRMED:
                ledger.confirmed[item] += count
            elif releases[line]:
                returned[item] += count
            else:
                ledger.written_off[item] += count
        for kind in ("OrderLineReserved", "OrderLineReleased"):
            lines = Counter(e.data["line"] for e in stream if e.type == kind)
            assert all(n == 1 for n in lines.values()), (order_id, kind, lines)
        assert removed[order_id] == reserved, (order_id, removed[order_id], reserved)
        assert removals[order_id] == len(o.reserved)
        assert restocked[order_id] == returned, (order_id, restocked[order_id], returned)
        assert checkins[order_id] == sum(1 for r in releases.values() if r)

    for item in {e.stream_id for e in events if e.type == "InventoryItemCreated"}:
        stock = 0
        for event in streams[item]:
            if event.type == "ItemsCheckedInToInventory":
                stock += event.data["count"]
            elif event.type == "ItemsRemovedFromInventory":
                stock -= event.data["count"]
            assert stock >= 0, f"item {item} went below zero"
        ledger.stock[item] = stock
        expected = ledger.outside[item] - ledger.confirmed[item] - ledger.written_off[item]
        assert stock == expected, (item, stock, expected)
    return ledger


def lines_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = json.loads(row["lines"])
    return lines
