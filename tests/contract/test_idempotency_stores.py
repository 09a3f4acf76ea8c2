"""The idempotency store contract, on a SQLite file and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.commands.idempotency import (
    Claimed,
    IdempotencyStore,
    InFlight,
    Mismatch,
    PostgresIdempotencyStore,
    Replay,
    SQLiteIdempotencyStore,
)
from tests.postgres import database_for


class IdempotencyContract:
    async def open_store(self, directory: Path, **options: float) -> IdempotencyStore:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[IdempotencyStore]:
        store = await self.open_store(tmp_path)
        yield store
        await store.close()

    async def test_the_first_response_is_replayed_to_a_retry(self, store: IdempotencyStore) -> None:
        assert await store.claim("k", "f") == Claimed()
        assert await store.claim("k", "f") == InFlight()
        await store.complete("k", 202, {"location": "/x"}, b'{"id": 1}')
        assert await store.claim("k", "f") == Replay(202, {"location": "/x"}, b'{"id": 1}')
        assert await store.claim("k", "other") == Mismatch()

    async def test_a_released_claim_can_be_taken_again(self, store: IdempotencyStore) -> None:
        await store.claim("k", "f")
        await store.release("k")
        assert await store.claim("k", "f") == Claimed()

    async def test_racing_claims_have_exactly_one_winner(self, store: IdempotencyStore) -> None:
        outcomes = await asyncio.gather(*(store.claim("k", "f") for _ in range(20)))
        assert outcomes.count(Claimed()) == 1 and outcomes.count(InFlight()) == 19

    async def test_a_claim_left_by_a_killed_process_expires(self, tmp_path: Path) -> None:
        store = await self.open_store(tmp_path, claim_timeout=0.05)
        try:
            await store.claim("k", "f")
            await asyncio.sleep(0.1)
            assert await store.claim("k", "f") == Claimed()
        finally:
            await store.close()


class TestSQLiteIdempotencyStore(IdempotencyContract):
    async def open_store(self, directory: Path, **options: float) -> IdempotencyStore:
        return await SQLiteIdempotencyStore.open(directory / "idempotency.sqlite", **options)


class TestPostgresIdempotencyStore(IdempotencyContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(self, directory: Path, **options: float) -> IdempotencyStore:
        dsn = await database_for(self.server_dsn, str(directory), "i")
        return await PostgresIdempotencyStore.open(dsn, **options)
