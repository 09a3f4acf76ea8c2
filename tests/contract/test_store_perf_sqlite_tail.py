"""The SQLite store's subscribers read what their own process committed last from memory
(its tail), and still never skip, repeat or mis-decode an event, whoever wrote it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eventgate.eventstore import NewEvent, RecordedEvent, SQLiteEventStore, Upcasters
from eventgate.eventstore.model import Scanned


def new(n: int, schema_version: int = 1) -> NewEvent:
    return NewEvent("Happened", {"n": n}, {"by": "test"}, schema_version=schema_version)


async def collect(batches: AsyncIterator[list[RecordedEvent]], count: int) -> list[RecordedEvent]:
    seen: list[RecordedEvent] = []
    async with asyncio.timeout(5):
        while len(seen) < count:
            seen.extend(await anext(batches))
    return seen


async def test_events_another_process_wrote_between_two_local_batches_are_not_skipped(
    tmp_path: Path,
) -> None:
    here = await SQLiteEventStore.open(tmp_path / "events.sqlite", poll_interval=3600)
    there = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        batches = here.subscribe(after=0, batch_size=3)
        await here.append("a", [new(1), new(2)])
        first = await collect(batches, 2)  # from the tail
        await there.append("b", [new(3)])  # the tail does not see it...
        await here.append("a", [new(4), new(5)])  # ...and this batch does not follow it
        rest = await collect(batches, 3)
        assert [e.data["n"] for e in first + rest] == [1, 2, 3, 4, 5]
        assert first + rest == await here.read_all()
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await here.close()
        await there.close()


async def test_a_caught_up_subscriber_sees_another_process_within_the_poll_interval(
    tmp_path: Path,
) -> None:
    here = await SQLiteEventStore.open(tmp_path / "events.sqlite", poll_interval=0.05)
    there = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        batches = here.subscribe(after=0)
        await here.append("a", [new(1)])
        await collect(batches, 1)
        waiting = asyncio.ensure_future(anext(batches))  # at the tail's end, waiting
        await asyncio.sleep(0.01)
        await there.append("b", [new(2)])
        [event] = await asyncio.wait_for(waiting, 2)
        assert (event.stream_id, event.position) == ("b", 2)
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await here.close()
        await there.close()


async def test_a_subscriber_behind_the_tail_reads_the_file_then_the_tail_in_order(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        for n in range(0, 12_000, 1000):  # more than the tail keeps
            await store.append(f"s-{n}", [new(k) for k in range(n, n + 1000)])
        batches = store.subscribe(after=17, batch_size=700)
        appending = asyncio.ensure_future(store.append("late", [new(12_000)]))
        seen = await collect(batches, 12_001 - 17)
        await appending
        assert [e.position for e in seen] == list(range(18, 12_002))
        assert seen == await store.read_all(after=17, limit=20_000)
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_events_from_the_tail_are_upcast_and_filtered_like_those_from_the_file(
    tmp_path: Path,
) -> None:
    def doubled(data: dict[str, Any]) -> dict[str, Any]:
        return {"n": data["n"] * 2}

    upcasters = Upcasters()
    upcasters.register("Happened", 1, doubled)
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite", upcasters=upcasters)
    try:
        batches = store.subscribe_matching(lambda stream, type_name: stream == "mine")
        await store.append("mine", [new(1), new(5, schema_version=2)])
        await store.append("other", [new(2)])
        await store.append("mine", [new(3)])
        got: list[Scanned] = []
        async with asyncio.timeout(5):
            while not got or got[-1].position < 4:
                got.append(await anext(batches))
        kept = [event for scanned in got for event in scanned.events]
        assert [(e.data["n"], e.schema_version) for e in kept] == [(2, 2), (5, 2), (6, 2)]
        from_file = [e for e in await store.read_all() if e.stream_id == "mine"]
        assert kept == from_file
        await batches.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
