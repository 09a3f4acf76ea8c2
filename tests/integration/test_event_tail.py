"""The tail every live client shares (streaming/tail.py), on a real SQLite store: a follower
gets exactly the store's events in order whether it starts inside the tail or far behind it,
falls behind it while appends go on, or filters; heartbeats; a failing store is raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventgate.errors import EventStoreError
from eventgate.eventstore import NewEvent
from eventgate.eventstore.sqlite import SQLiteEventStore
from eventgate.streaming.tail import Tail


def everything(stream_id: str, type_name: str) -> bool:
    return True


async def take(batches: AsyncIterator[list], count: int, slow: float = 0.0) -> list[int]:
    positions: list[int] = []
    async with asyncio.timeout(20):
        async for batch in batches:
            positions += [e.position for e in batch]
            if slow:
                await asyncio.sleep(slow)
            if len(positions) >= count:
                return positions
    return positions


async def append(store: SQLiteEventStore, counts: list[int]) -> None:
    for n, count in enumerate(counts):
        events = [NewEvent("Even" if i % 2 == 0 else "Odd", {"i": i}) for i in range(count)]
        await store.append(f"s-{n % 3}", events)
        await asyncio.sleep(0)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.lists(st.integers(1, 20), max_size=5),
    during=st.lists(st.integers(1, 30), min_size=1, max_size=12),
    start=st.integers(0, 60),
    kept=st.integers(2, 40),
    slow=st.sampled_from([0.0, 0.002]),
)
async def test_a_follower_gets_every_event_once_in_order_wherever_it_starts(
    tmp_path_factory: pytest.TempPathFactory,
    before: list[int],
    during: list[int],
    start: int,
    kept: int,
    slow: float,
) -> None:
    store = await SQLiteEventStore.open(tmp_path_factory.mktemp("tail") / "events.sqlite")
    try:
        await append(store, before)
        tail = Tail(store, kept=kept)
        after = min(start, sum(before))
        follower = tail.follow(everything, after, batch=7)
        taking = asyncio.create_task(take(follower, sum(before) + sum(during) - after, slow))
        await append(store, during)
        got = await taking
        stored = [e.position for e in await store.read_all(after, 10_000)]
        assert got == stored
        await follower.aclose()  # type: ignore[attr-defined]
        await tail.close()
    finally:
        await store.close()


async def test_a_filtering_follower_gets_heartbeats_while_nothing_it_wants_comes(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        tail = Tail(store)

        def odd(stream_id: str, type_name: str) -> bool:
            return type_name == "Odd"

        follower = tail.follow(odd, 0, heartbeat=0.05)
        await append(store, [1])  # an Even only
        async with asyncio.timeout(5):
            assert await anext(follower) == []  # type: ignore[call-overload]
            await append(store, [2])
            [odd_one] = await anext(follower)  # type: ignore[call-overload]
        assert odd_one.type == "Odd"
        await follower.aclose()  # type: ignore[attr-defined]
        await tail.close()
    finally:
        await store.close()


async def test_a_store_that_fails_is_raised_to_the_followers(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite", poll_interval=0.05)
    tail = Tail(store)
    follower = tail.follow(everything, 0)
    waiting = asyncio.create_task(anext(follower))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    await store.close()
    with pytest.raises(EventStoreError):
        async with asyncio.timeout(5):
            await waiting


class FailsOnce:
    """A real SQLite store whose live subscription breaks once, after its second batch, as a
    database that went away for a moment would; every other call goes to the store."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self._store = store
        self.batches = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def subscribe(self, after: int = 0, batch_size: int = 500) -> AsyncIterator[list]:
        async for events in self._store.subscribe(after, batch_size):
            yield events
            self.batches += 1
            if self.batches == 2:
                raise ConnectionError("database went away")


async def test_after_the_store_failed_once_every_follower_still_gets_every_event(
    tmp_path: Path,
) -> None:
    """The followers are busy with the first batch when the tail breaks on the second: one
    of them is told, the others go on (the tail started again) and miss nothing."""
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        tail = Tail(FailsOnce(store))  # type: ignore[arg-type]
        followers = [tail.follow(everything, 0) for _ in range(3)]
        taking = [asyncio.create_task(take(f, 7, slow=0.3)) for f in followers]
        await asyncio.sleep(0.05)
        await append(store, [1])  # the first batch: every follower takes it, then is busy
        await asyncio.sleep(0.1)
        await append(store, [2])  # the second: the tail breaks after it
        await asyncio.sleep(0.5)
        await append(store, [1] * 4)  # only a tail started again (or the store) has these
        got = await asyncio.gather(*taking, return_exceptions=True)
        stored = [e.position for e in await store.read_all(0, 100)]
        errors = [g for g in got if isinstance(g, BaseException)]
        assert len(errors) <= 1 and all(isinstance(e, ConnectionError) for e in errors), got
        assert [g for g in got if not isinstance(g, BaseException)] == [stored] * (3 - len(errors))
        await tail.close()
    finally:
        await store.close()
