"""`apply_all`: several projections' deliveries in one read-store transaction, all or nothing,
on a real SQLite file and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.errors import StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent
from eventgate.hub.hub import Delivery
from eventgate.projections import Projection, Row
from eventgate.projections.postgres import PostgresReadStore
from eventgate.projections.protocol import ReadStore
from eventgate.projections.readstore import SQLiteReadStore
from tests.contract.readstore_contract import FIXED, counters, recorded
from tests.postgres import database_for


def names() -> Projection:
    """The last label per stream; `Broken` events always fail here."""
    projection = Projection("names", {"id": str, "label": str})

    @projection.on("Added")
    def _added(row: Row | None, event: RecordedEvent) -> Row:
        return {"id": event.stream_id, "label": event.data.get("label", "-")}

    @projection.on("Broken")
    def _broken(row: Row | None, event: RecordedEvent) -> Row | None:
        raise ValueError("names cannot take this")

    return projection


class ApplyAllContract:
    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ReadStore]:
        FIXED["on"] = False
        store = await self.open_store(tmp_path, [counters(), names()])
        yield store
        await store.close()

    async def test_two_projections_move_their_rows_and_checkpoints_in_one_call(
        self, store: ReadStore
    ) -> None:
        count, label = store.projection("counters"), store.projection("names")
        events = [recorded(1, "a", n=1, label="x"), recorded(2, "b", n=2), recorded(3, "a", n=3)]
        changes = await store.apply_all(
            [(count, Delivery(0, 4, events)), (label, Delivery(0, 4, events[:2]))]
        )
        assert [{(c.view, c.id, c.position) for c in each} for each in changes] == [
            {("counters", "a", 3), ("counters", "b", 2)},
            {("names", "a", 1), ("names", "b", 2)},
        ]
        assert (await store.get(count, "a") or {})["total"] == 4
        assert (await store.get(label, "a") or {})["label"] == "x"
        assert [await store.load_checkpoint(n) for n in ("counters", "names")] == [4, 4]

    async def test_one_stale_checkpoint_applies_none_of_the_deliveries(
        self, store: ReadStore
    ) -> None:
        count, label = store.projection("counters"), store.projection("names")
        await store.apply(label, Delivery(0, 1, [recorded(1, "a", n=1, label="x")]))
        with pytest.raises(StaleCheckpoint):
            await store.apply_all(
                [
                    (count, Delivery(0, 2, [recorded(1, "a", n=1), recorded(2, "a", n=5)])),
                    (label, Delivery(0, 2, [recorded(2, "a", n=5, label="y")])),  # it is at 1
                ]
            )
        assert await store.get(count, "a") is None
        assert (await store.get(label, "a") or {})["label"] == "x"
        assert [await store.load_checkpoint(n) for n in ("counters", "names")] == [0, 1]

    async def test_a_stream_parks_only_in_the_projection_that_failed(
        self, store: ReadStore
    ) -> None:
        count, label = store.projection("counters"), store.projection("names")
        FIXED["on"] = True  # counters takes Broken events now; names never does
        events = [
            recorded(1, "a", n=1, label="x"),
            recorded(2, "a", "Broken"),
            recorded(3, "a", n=2),
        ]
        await store.apply_all([(count, Delivery(0, 3, events)), (label, Delivery(0, 3, events))])
        assert store.parked("names") == {"a"} and store.parked("counters") == frozenset()
        assert (await store.get(count, "a") or {})["label"] == "fixed"
        assert (await store.get(label, "a") or {})["label"] == "x"  # not past the gap
        [parked] = await store.parked_streams("names")
        assert (parked.position, parked.events) == (2, 2)


class TestSQLiteApplyAll(ApplyAllContract):
    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        return await SQLiteReadStore.open(directory / "readmodels.sqlite", projections)


class TestPostgresApplyAll(ApplyAllContract):
    @pytest.fixture(autouse=True)
    def _server(self, postgres_dsn: str) -> None:
        self.server_dsn = postgres_dsn

    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        dsn = await database_for(self.server_dsn, str(directory), "r")
        return await PostgresReadStore.open(dsn, projections)
