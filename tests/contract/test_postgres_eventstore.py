"""The event store contract, run against a real PostgreSQL started for the session."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import pytest

from eventgate.eventstore import EventStore, Upcasters
from eventgate.eventstore.postgres import PostgresEventStore
from tests.contract.eventstore_contract import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(
        self, directory: Path, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> EventStore:
        """One database per test directory, so every test starts empty."""
        name = "t_" + hashlib.sha256(str(directory).encode()).hexdigest()[:16]
        admin = await asyncpg.connect(self.server_dsn)
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.server_dsn.rsplit("/", 1)[0] + f"/{name}"
        return await PostgresEventStore.open(dsn, upcasters=upcasters, poll_interval=poll_interval)
