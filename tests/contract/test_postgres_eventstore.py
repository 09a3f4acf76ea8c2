"""The event store contract, run against a real PostgreSQL started for the session."""

from __future__ import annotations

from pathlib import Path

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
