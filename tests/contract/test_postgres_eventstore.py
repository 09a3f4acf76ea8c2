"""The event store contract, run against a real PostgreSQL started for the session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from eventgate.eventstore import EventStore, Upcasters
from eventgate.eventstore.postgres import PostgresEventStore
from tests.contract.eventstore_contract import EventStoreContract
from tests.postgres import database_for


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(
        self, directory: Path, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> EventStore:
        """One database per test directory, so every test starts empty."""
        dsn = await database_for(self.server_dsn, str(directory), "t")
        return await PostgresEventStore.open(dsn, upcasters=upcasters, poll_interval=poll_interval)


async def test_concurrent_subscribers_share_one_listen_connection(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Subscribers started together (one per projection) open one LISTEN connection, not
    one each that only the last would keep (the others would leak)."""
    dsn = await database_for(postgres_dsn, str(tmp_path), "l")
    store = await PostgresEventStore.open(dsn, poll_interval=0.05)
    try:
        subscriptions = [store.subscribe(0) for _ in range(5)]
        waiting = [asyncio.create_task(anext(s)) for s in subscriptions]  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        database = dsn.rsplit("/", 1)[1]
        admin = await asyncpg.connect(dsn)
        try:
            listening = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
                database,
            )
        finally:
            await admin.close()
        assert listening == 1
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for subscription in subscriptions:
            await subscription.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
