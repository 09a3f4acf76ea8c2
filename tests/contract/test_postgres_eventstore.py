"""The event store contract, run against a real PostgreSQL started for the session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from eventgate.eventstore import EventStore, Upcasters
from eventgate.eventstore.postgres import PostgresEventStore
from tests.contract.eventstore_contract import EventStoreContract, new
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


async def test_two_writers_on_hot_streams_keep_versions_in_position_order(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Two stores (two processes' worth of flushers) appending to the same few streams: no
    append fails (no deadlock between batches), and in every stream the positions follow the
    versions (a reader of the global order meets version n before n + 1)."""
    dsn = await database_for(postgres_dsn, str(tmp_path), "h")
    stores = [await PostgresEventStore.open(dsn) for _ in range(2)]
    try:

        async def writer(n: int) -> None:
            store = stores[n % 2]
            for i in range(15):
                await store.append(f"hot-{(n + i) % 3}", [new(writer=n, i=i)])

        await asyncio.gather(*(writer(n) for n in range(32)))
        events = await stores[0].read_all(limit=10_000)
        assert len(events) == 32 * 15
        for event in events:  # each event in the stream it was appended to
            assert event.stream_id == f"hot-{(event.data['writer'] + event.data['i']) % 3}"
        for stream in ("hot-0", "hot-1", "hot-2"):
            versions = [e.stream_version for e in events if e.stream_id == stream]
            assert versions == list(range(1, len(versions) + 1)), stream
    finally:
        for store in stores:
            await store.close()
