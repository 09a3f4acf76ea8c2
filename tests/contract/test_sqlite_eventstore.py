"""The event store contract, run against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from eventgate.eventstore import EventStore, SQLiteEventStore, Upcasters
from tests.contract.eventstore_contract import EventStoreContract


class TestSQLiteEventStore(EventStoreContract):
    dense = True

    async def open_store(
        self, directory: Path, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> EventStore:
        return await SQLiteEventStore.open(
            directory / "events.sqlite", upcasters=upcasters, poll_interval=poll_interval
        )
