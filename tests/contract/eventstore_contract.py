"""The contract every EventStore backend must pass; subclass it once per backend."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventgate.errors import ConcurrencyError, DuplicateEvent, EventStoreError
from eventgate.eventstore import NO_STREAM, EventStore, NewEvent, Upcasters


def new(type_name: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=type_name, data=dict(data), metadata={"correlationId": "c-1"})


def increasing(positions: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(positions))


class EventStoreContract:
    """Given a fresh store from `open_store`, every test here must pass.

    Positions strictly increase and are never skipped by a reader; a backend whose
    positions are also dense (1, 2, 3, ... : SQLite, whose writers take one lock) sets
    `dense` and is held to that too. PostgreSQL's are transaction-ordered, not dense."""

    dense: bool = False

    def assert_dense(self, positions: list[int], count: int) -> None:
        assert len(positions) == count and increasing(positions)
        if self.dense:
            assert positions == list(range(1, count + 1))

    async def open_store(
        self, directory: Path, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> EventStore:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = await self.open_store(tmp_path)
        yield store
        await store.close()

    async def test_appended_events_come_back_with_versions_positions_and_metadata(
        self, store: EventStore
    ) -> None:
        before = datetime.now(UTC)
        recorded = await store.append("s-1", [new(n=1), new(n=2)], expected_version=NO_STREAM)
        stored = await store.read_stream("s-1")
        assert stored == recorded
        assert [e.stream_version for e in stored] == [1, 2]
        self.assert_dense([e.position for e in stored], 2)
        assert [e.data for e in stored] == [{"n": 1}, {"n": 2}]
        assert stored[0].metadata == {"correlationId": "c-1"}
        assert stored[0].type == "Happened" and stored[0].schema_version == 1
        assert stored[0].time.tzinfo is not None and stored[0].time >= before
        assert len({e.id for e in stored}) == 2

    async def test_a_stream_is_read_from_a_given_version(self, store: EventStore) -> None:
        await store.append("s-1", [new(n=n) for n in range(5)])
        assert [e.stream_version for e in await store.read_stream("s-1", 4)] == [4, 5]
        assert await store.read_stream("unknown") == []

    async def test_a_command_s_events_and_what_they_caused_are_found_by_metadata(
        self, store: EventStore
    ) -> None:
        def caused(type_name: str, command: str, cause: str) -> NewEvent:
            return NewEvent(type=type_name, data={}, metadata={"commandId": command,
                                                               "causationId": cause})  # fmt: skip

        first = await store.append("s-1", [caused("A", "c-1", "c-1"), caused("B", "c-1", "c-1")])
        await store.append("s-2", [caused("Other", "c-2", "c-2")])
        answers = await store.append("s-3", [caused("C", "c-3", first[0].id)])
        later = await store.append("s-1", [caused("D", "c-4", first[1].id)])
        assert await store.read_command("c-1") == first
        assert await store.read_command("c-3") == answers
        assert await store.read_command("nobody") == []
        assert await store.read_caused_by([first[0].id, first[1].id]) == [*answers, *later]
        assert await store.read_caused_by([first[0].id, first[1].id], limit=1) == answers
        assert await store.read_caused_by(["c-1"]) == first
        assert await store.read_caused_by([]) == []

    async def test_read_all_pages_by_position(self, store: EventStore) -> None:
        for n in range(5):
            await store.append(f"s-{n % 2}", [new(n=n)])
        everything = await store.read_all()
        self.assert_dense([e.position for e in everything], 5)
        page = await store.read_all(after=everything[0].position, limit=3)
        assert page == everything[1:4]
        assert [e.data["n"] for e in page] == [1, 2, 3]
        assert await store.read_all(after=everything[-1].position) == []
        assert await store.head() == everything[-1].position

    async def test_a_wrong_expected_version_raises_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        [first] = await store.append("s-1", [new()], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("s-1", [new(), new()], expected_version=0)
        assert (caught.value.expected, caught.value.actual) == (0, 1)
        with pytest.raises(ConcurrencyError):
            await store.append("s-1", [new()], expected_version=2)
        assert len(await store.read_stream("s-1")) == 1
        assert await store.head() == first.position

    async def test_an_append_is_all_or_nothing(self, store: EventStore) -> None:
        taken = new(n=0)
        [stored] = await store.append("s-1", [taken])
        with pytest.raises(DuplicateEvent):
            await store.append("s-2", [new(n=1), taken, new(n=2)])  # second id is taken
        assert await store.read_stream("s-2") == []
        assert await store.head() == stored.position

    async def test_one_failing_append_does_not_fail_its_batch_neighbours(
        self, store: EventStore
    ) -> None:
        await store.append("s-0", [new()])
        results = await asyncio.gather(
            *(store.append(f"s-{n}", [new(n=n)], expected_version=NO_STREAM) for n in range(20)),
            return_exceptions=True,
        )
        assert isinstance(results[0], ConcurrencyError)
        assert all(isinstance(r, list) for r in results[1:])
        self.assert_dense([e.position for e in await store.read_all()], 20)

    async def test_concurrent_appenders_get_gapless_positions_and_versions(
        self, store: EventStore
    ) -> None:
        appended: list[str] = []

        async def writer(n: int) -> None:
            for i in range(10):
                stored = await store.append(f"s-{n % 8}", [new(writer=n, i=i), new(writer=n, i=i)])
                appended.extend(e.id for e in stored)

        await asyncio.gather(*(writer(n) for n in range(32)))
        events = await store.read_all(limit=10_000)
        self.assert_dense([e.position for e in events], 640)
        assert sorted(e.id for e in events) == sorted(appended)
        for stream in range(8):
            versions = [e.stream_version for e in await store.read_stream(f"s-{stream}")]
            assert versions == list(range(1, 81))

    async def test_racing_writers_on_one_version_have_exactly_one_winner(
        self, store: EventStore
    ) -> None:
        await store.append("s-1", [new()])
        results = await asyncio.gather(
            *(store.append("s-1", [new(n=n)], expected_version=1) for n in range(30)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, list) for r in results) == 1
        assert all(isinstance(r, (list, ConcurrencyError)) for r in results)
        assert len(await store.read_stream("s-1")) == 2

    async def test_a_reader_never_sees_a_gap_while_writers_append(self, store: EventStore) -> None:
        seen: list[int] = []

        async def reader() -> None:
            while len(seen) < 400:
                batch = await store.read_all(after=seen[-1] if seen else 0, limit=37)
                seen.extend(e.position for e in batch)
                await asyncio.sleep(0)

        async def writer(n: int) -> None:
            for i in range(20):
                await store.append(f"s-{n}-{i % 3}", [new(n=n, i=i)])

        await asyncio.gather(reader(), *(writer(n) for n in range(20)))
        assert seen == [e.position for e in await store.read_all(limit=1000)]  # none skipped
        self.assert_dense(seen, 400)

    async def test_a_subscription_is_woken_by_an_append_without_polling(
        self, tmp_path: Path
    ) -> None:
        store = await self.open_store(tmp_path, poll_interval=3600)
        try:
            await store.append("s-1", [new(n=1)])
            batches = store.subscribe(after=0)
            assert [e.data["n"] for e in await anext(batches)] == [1]
            waiting = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await store.append("s-1", [new(n=2)])
            batch = await asyncio.wait_for(waiting, 2)
            assert [e.data["n"] for e in batch] == [2]
            await batches.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    async def test_a_subscription_polls_for_appends_from_another_process(
        self, tmp_path: Path
    ) -> None:
        follower = await self.open_store(tmp_path, poll_interval=0.05)
        writer = await self.open_store(tmp_path)
        try:
            batches = follower.subscribe(after=0)
            waiting = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0.1)
            await writer.append("s-1", [new(n=1)])
            batch = await asyncio.wait_for(waiting, 2)
            assert [e.data["n"] for e in batch] == [1]
            await batches.aclose()  # type: ignore[attr-defined]
        finally:
            await follower.close()
            await writer.close()

    async def test_a_matching_subscription_decodes_only_what_it_keeps_and_reads_past_the_rest(
        self, tmp_path: Path
    ) -> None:
        """Events `keep` refuses are never decoded (their upcaster fails if run), and every
        batch says how far it read, kept or not, so a reader moves past them."""
        store = await self.open_store(tmp_path)
        await store.append("mine", [new(n=1)])
        await store.append("other", [new("Unreadable", n=2), new(n=3)])
        await store.append("mine", [new("Unreadable", n=4), new(n=5)])
        await store.append("other", [new(n=6)])
        stored = await store.read_all()
        await store.close()

        def unreadable(data: dict[str, object]) -> dict[str, object]:
            raise ValueError("an event the subscriber does not keep was decoded")

        upcasters = Upcasters()
        upcasters.register("Unreadable", 1, unreadable)
        store = await self.open_store(tmp_path, upcasters=upcasters)
        try:
            batches = store.subscribe_matching(
                lambda stream, type_name: stream == "mine" and type_name == "Happened",
                after=0,
                batch_size=2,
            )
            got = [await anext(batches) for _ in range(3)]
            await batches.aclose()  # type: ignore[attr-defined]
            assert [[e.data["n"] for e in batch.events] for batch in got] == [[1], [], [5]]
            assert [batch.position for batch in got] == [e.position for e in stored[1::2]]
            assert got[2].events == [stored[4]]
        finally:
            await store.close()

    async def test_a_matching_subscription_is_woken_by_an_append_without_polling(
        self, tmp_path: Path
    ) -> None:
        store = await self.open_store(tmp_path, poll_interval=3600)
        try:
            batches = store.subscribe_matching(lambda stream, type_name: True)
            waiting = asyncio.ensure_future(anext(batches))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            [recorded] = await store.append("s-1", [new(n=1)])
            scanned = await asyncio.wait_for(waiting, 2)
            assert scanned.events == [recorded] and scanned.position == recorded.position
            await batches.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    async def test_a_subscription_cancelled_as_an_append_wakes_it_stops(
        self, tmp_path: Path
    ) -> None:
        """A function runner cancels its reader to change partitions, whenever an append may
        have just woken it: the reader must stop. (Python 3.11's asyncio.wait_for swallows a
        cancel that lands after the awaited wake-up, CPython gh-86296: the reader read on
        and the runner waited for it forever.) The cancel lands 0..5 loop turns after the
        append, so one of them falls between the wake-up and the subscriber resuming."""
        store = await self.open_store(tmp_path, poll_interval=3600)

        async def follow() -> None:
            async for _ in store.subscribe_matching(lambda stream, type_name: True):
                pass

        try:
            for turns in range(6):
                follower = asyncio.create_task(follow())
                await asyncio.sleep(0.05)
                await store.append("s-1", [new(n=turns)])
                for _ in range(turns):
                    await asyncio.sleep(0)
                follower.cancel()
                done, _ = await asyncio.wait({follower}, timeout=5)
                assert follower in done, f"cancelled {turns} turn(s) after an append, it ran on"
        finally:
            await store.close()

    async def test_events_survive_closing_and_reopening(self, tmp_path: Path) -> None:
        store = await self.open_store(tmp_path)
        await store.append("s-1", [new(n=1)])
        await store.close()
        store = await self.open_store(tmp_path)
        try:
            assert [e.data for e in await store.read_stream("s-1")] == [{"n": 1}]
            await store.append("s-1", [new(n=2)], expected_version=1)
        finally:
            await store.close()

    async def test_old_events_are_upcast_step_by_step_when_read(self, tmp_path: Path) -> None:
        store = await self.open_store(tmp_path)
        await store.append("s-1", [NewEvent("Renamed", {"name": "a"}, schema_version=1)])
        await store.append("s-1", [NewEvent("Renamed", {"newName": "b"}, schema_version=2)])
        await store.append(
            "s-1", [NewEvent("Renamed", {"newName": "c", "by": "x"}, schema_version=3)]
        )
        await store.close()

        upcasters = Upcasters()
        upcasters.register("Renamed", 1, lambda d: {"newName": d["name"]})
        upcasters.register("Renamed", 2, lambda d: {**d, "by": "unknown"})
        store = await self.open_store(tmp_path, upcasters=upcasters)
        try:
            for read in (store.read_stream("s-1"), store.read_all()):
                events = await read
                assert [e.schema_version for e in events] == [3, 3, 3]
                assert [e.data for e in events] == [
                    {"newName": "a", "by": "unknown"},
                    {"newName": "b", "by": "unknown"},
                    {"newName": "c", "by": "x"},
                ]
        finally:
            await store.close()

    async def test_bad_arguments_are_refused_before_anything_is_written(
        self, store: EventStore
    ) -> None:
        with pytest.raises(EventStoreError):
            await store.append("", [new()])
        with pytest.raises(EventStoreError):
            await store.append("s-1", [new()], expected_version=-1)
        duplicate = new()
        with pytest.raises(EventStoreError):
            await store.append("s-1", [duplicate, duplicate])
        assert await store.head() == 0

    async def test_data_that_is_not_json_fails_that_append_alone(self, store: EventStore) -> None:
        bad = store.append("s-1", [NewEvent("T", {"tags": {1, 2}})])
        good = store.append("s-2", [new()])
        results = await asyncio.gather(bad, good, return_exceptions=True)
        assert isinstance(results[0], EventStoreError) and isinstance(results[1], list)
        assert [e.stream_id for e in await store.read_all()] == ["s-2"]

    async def test_a_closed_store_refuses_work(self, tmp_path: Path) -> None:
        store = await self.open_store(tmp_path)
        await store.close()
        with pytest.raises(EventStoreError):
            await store.append("s-1", [new()])
        with pytest.raises(EventStoreError):
            await store.read_all()

    async def test_unicode_and_nested_data_round_trip(self, store: EventStore) -> None:
        data = {"name": "Zürich ☃", "nested": {"list": [1, 2.5, None, True]}}
        await store.append("s-ü", [NewEvent("T", data, {"k": "v"})])
        [event] = await store.read_stream("s-ü")
        assert event.data == data and event.metadata == {"k": "v"}
