"""The SQLite store's group commit takes new streams on trust (their first event goes in at
version 1, which the unique constraint refuses for a stream that exists); a batch that hits
the constraint is written again, so only the offending appends fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.errors import ConcurrencyError, DuplicateEvent
from eventgate.eventstore import NO_STREAM, NewEvent, SQLiteEventStore


def new(**data: object) -> NewEvent:
    return NewEvent("Happened", dict(data))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    yield store
    await store.close()


async def test_a_new_stream_append_to_an_existing_stream_says_its_version(
    store: SQLiteEventStore,
) -> None:
    await store.append("s-1", [new(), new(), new()])
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("s-1", [new()], expected_version=NO_STREAM)
    assert (caught.value.expected, caught.value.actual) == (0, 3)
    assert [e.stream_version for e in await store.read_stream("s-1")] == [1, 2, 3]


async def test_two_appends_creating_one_stream_in_one_batch_have_one_winner(
    store: SQLiteEventStore,
) -> None:
    results = await asyncio.gather(
        *(store.append("s-1", [new(n=n)], expected_version=NO_STREAM) for n in range(5)),
        store.append("s-2", [new()], expected_version=NO_STREAM),
        return_exceptions=True,
    )
    assert sum(isinstance(r, list) for r in results[:5]) == 1
    assert all(isinstance(r, list | ConcurrencyError) for r in results[:5])
    assert isinstance(results[5], list)
    assert [e.position for e in await store.read_all()] == [1, 2]


async def test_a_taken_stream_and_a_taken_event_id_in_one_batch_fail_alone(
    store: SQLiteEventStore,
) -> None:
    taken = new(n=0)
    await store.append("old", [taken])
    results = await asyncio.gather(
        store.append("a", [new(n=1)], expected_version=NO_STREAM),
        store.append("old", [new(n=2)], expected_version=NO_STREAM),  # the stream exists
        store.append("b", [new(n=3), taken], expected_version=NO_STREAM),  # the id is stored
        store.append("old", [new(n=4)], expected_version=1),
        store.append("c", [new(n=5)]),
        return_exceptions=True,
    )
    assert isinstance(results[1], ConcurrencyError) and isinstance(results[2], DuplicateEvent)
    written = [r for r in results if isinstance(r, list)]
    assert [[e.data["n"] for e in r] for r in written] == [[1], [4], [5]]
    events = await store.read_all()
    assert [e.position for e in events] == [1, 2, 3, 4]
    assert [e.stream_version for e in await store.read_stream("old")] == [1, 2]
    assert await store.read_stream("b") == []


async def test_versions_another_process_wrote_are_read_again(tmp_path: Path) -> None:
    """The writer knows the versions it committed itself, until another writer commits."""
    here = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    there = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    try:
        await here.append("s-1", [new(n=1)], expected_version=NO_STREAM)
        await there.append("s-1", [new(n=2)], expected_version=1)
        [third] = await here.append("s-1", [new(n=3)], expected_version=2)  # not 1 any more
        assert (third.stream_version, third.position) == (3, 3)
        await there.append("s-1", [new(n=4)], expected_version=3)
        with pytest.raises(ConcurrencyError) as caught:
            await here.append("s-1", [new(n=5)], expected_version=3)
        assert (caught.value.expected, caught.value.actual) == (3, 4)
        assert [e.data["n"] for e in await there.read_stream("s-1")] == [1, 2, 3, 4]
    finally:
        await here.close()
        await there.close()
