"""The function store contract, on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventgate.errors import DeadLetterNotFound
from eventgate.eventstore.model import RecordedEvent
from eventgate.functions import function
from eventgate.functions.postgres import PostgresFunctionStore
from eventgate.functions.state import FunctionStore
from eventgate.functions.store import SQLiteFunctionStore
from tests.postgres import database_for


@function(on=["Happened"], retries=2)
async def noted(event: RecordedEvent, ctx: object) -> None:
    """A function for the registry."""


def event(n: int) -> RecordedEvent:
    return RecordedEvent(
        id=f"e-{n}", stream_id=f"s-{n}", stream_version=1, position=n, type="Happened",
        schema_version=1, time=datetime(2026, 11, 29, tzinfo=UTC), data={"n": n}, metadata={},
    )  # fmt: skip


class FunctionStoreContract:
    async def open_store(self, directory: Path) -> FunctionStore:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[FunctionStore]:
        store = await self.open_store(tmp_path)
        yield store
        await store.close()

    async def test_checkpoints_are_saved_only_for_leased_partitions(
        self, store: FunctionStore
    ) -> None:
        await store.register([noted])
        assert await store.load_checkpoints("noted") == dict.fromkeys(range(16), 0)
        lease = await store.rebalance("w1", ttl=5)
        assert lease.owned == frozenset(range(16)) and lease.fair_share == 16
        lost = await store.save_progress("noted", "w1", {0: 10, 1: 20}, invocations=3)
        assert lost == frozenset()
        assert await store.save_progress("noted", "w2", {2: 99}) == {2}  # not its lease
        checkpoints = await store.load_checkpoints("noted")
        assert (checkpoints[0], checkpoints[1], checkpoints[2]) == (10, 20, 0)
        [status] = await store.status()
        assert (status.name, status.triggers, status.invocations) == ("noted", ["Happened"], 3)

    async def test_workers_share_partitions_fairly_and_leaving_frees_them(
        self, store: FunctionStore
    ) -> None:
        first = await store.rebalance("w1", ttl=5)
        second = await store.rebalance("w2", ttl=5)  # all taken: w1 must hand some back
        assert second.fair_share == 8 and second.owned == frozenset()
        surplus = sorted(first.owned)[8:]
        await store.rebalance("w1", ttl=5, release=surplus)
        second = await store.rebalance("w2", ttl=5)
        assert second.owned == frozenset(surplus)
        await store.leave("w1")
        assert len((await store.rebalance("w2", ttl=5)).owned) == 16

    async def test_dead_letters_are_kept_replayed_and_discarded(self, store: FunctionStore) -> None:
        failed = datetime.now(UTC)
        await store.dead_letter("noted", 3, event(1), ("ValueError", "boom"), 2, failed)
        await store.dead_letter("noted", 3, event(1), ("KeyError", "again"), 1, failed)
        [letter] = await store.dead_letters()
        assert (letter.attempts, letter.error_type, letter.status) == (3, "KeyError", "dead")
        assert await store.dead_letters_of([event(1).id, "other"]) == [letter]
        assert await store.dead_letters_of(["other"]) == await store.dead_letters_of([]) == []
        assert letter.event == event(1)
        assert (await store.dead_letter_by_id(letter.id)).error_message == "again"
        assert await store.request_replay(letter_id=letter.id) == 1
        assert await store.replays("noted", [3], skip=[]) == [(letter.id, 3, event(1))]
        assert await store.replays("noted", [4], skip=[]) == []
        await store.replayed(letter.id)
        assert await store.dead_letters("noted") == []
        with pytest.raises(DeadLetterNotFound):
            await store.discard(letter.id)
        with pytest.raises(DeadLetterNotFound):
            await store.request_replay(letter_id=letter.id)

    async def test_effects_are_recorded_once_and_forgotten_unless_dead_lettered(
        self, store: FunctionStore
    ) -> None:
        assert await store.effect("noted", "e-1", "mail") == (False, None)
        await store.record_effect("noted", "e-1", "mail", {"sent": 1})
        await store.record_effect("noted", "e-1", "mail", {"sent": 2})  # the first one stays
        assert await store.effect("noted", "e-1", "mail") == (True, {"sent": 1})
        await store.record_effect("noted", "e-2", "mail", None)
        await store.dead_letter("noted", 0, event(2), ("E", "x"), 1, datetime.now(UTC))
        await store.forget_effects("noted", ["e-1", "e-2"])
        assert await store.effect("noted", "e-1", "mail") == (False, None)
        assert await store.effect("noted", "e-2", "mail") == (True, None)


class TestSQLiteFunctionStore(FunctionStoreContract):
    async def open_store(self, directory: Path) -> FunctionStore:
        return await SQLiteFunctionStore.open(directory / "functions.sqlite")


class TestPostgresFunctionStore(FunctionStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(self, directory: Path) -> FunctionStore:
        return await PostgresFunctionStore.open(
            await database_for(self.server_dsn, str(directory), "f")
        )
