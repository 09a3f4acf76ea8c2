"""The contract every read store must pass; subclass it once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from eventgate.errors import StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent
from eventgate.hub.hub import Delivery
from eventgate.projections import Projection, Row
from eventgate.projections.parking import RETRY, SKIP
from eventgate.projections.protocol import ReadStore

FIXED = {"on": False}


def counters() -> Projection:
    """Counts per stream; `Broken` events fail until FIXED["on"], `Poison` always."""
    projection = Projection(
        "counters",
        {"id": str, "total": int, "even": bool, "label": str | None},
        indexes=[("total",)],
    )

    @projection.on("Added")
    def _added(row: Row | None, event: RecordedEvent) -> Row:
        total = (row["total"] if row else 0) + event.data["n"]
        label = event.data.get("label", row["label"] if row else None)
        return {"id": event.stream_id, "total": total, "even": total % 2 == 0, "label": label}

    @projection.on("Broken")
    def _broken(row: Row | None, event: RecordedEvent) -> Row | None:
        if not FIXED["on"]:
            raise ValueError("not yet")
        return row and {**row, "label": "fixed"}

    @projection.on("Poison")
    def _poison(row: Row | None, event: RecordedEvent) -> Row | None:
        return row and {**row, "total": 2**64}  # more than a column can hold

    return projection


def recorded(position: int, stream: str, type_name: str = "Added", **data: Any) -> RecordedEvent:
    return RecordedEvent(
        id=f"e-{position}", stream_id=stream, stream_version=1, position=position,
        type=type_name, schema_version=1, time=datetime.now(UTC), data=data, metadata={},
    )  # fmt: skip


class ReadStoreContract:
    """Given a fresh store from `open_store`, every test here must pass."""

    async def open_store(self, directory: Path, projections: list[Projection]) -> ReadStore:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ReadStore]:
        FIXED["on"] = False
        store = await self.open_store(tmp_path, [counters()])
        yield store
        await store.close()

    async def test_a_delivery_moves_rows_and_checkpoint_together(self, store: ReadStore) -> None:
        view = store.projection("counters")
        events = [recorded(1, "a", n=1, label="x"), recorded(2, "b", n=2), recorded(3, "a", n=3)]
        changes = await store.apply(view, Delivery(0, 5, events))
        assert {(c.id, c.position) for c in changes} == {("a", 3), ("b", 2)}
        assert await store.load_checkpoint("counters") == 5
        row = await store.get(view, "a")
        assert row is not None and (row["total"], row["even"], row["label"]) == (4, True, "x")
        assert (await store.get(view, "b") or {})["even"] is True
        assert await store.get(view, "nobody") is None
        assert [r["id"] for r in await store.rows(view)] == ["a", "b"]

    async def test_a_delivery_from_elsewhere_than_the_checkpoint_is_refused(
        self, store: ReadStore
    ) -> None:
        view = store.projection("counters")
        await store.apply(view, Delivery(0, 1, [recorded(1, "a", n=1)]))
        with pytest.raises(StaleCheckpoint):
            await store.apply(view, Delivery(0, 2, [recorded(2, "a", n=5)]))
        assert (await store.get(view, "a") or {})["total"] == 1
        assert await store.load_checkpoint("counters") == 1

    async def test_select_filters_orders_and_limits_with_parameters(self, store: ReadStore) -> None:
        view = store.projection("counters")
        events = [recorded(n, f"s{n}", n=n, label=f"l_{n}%") for n in range(1, 7)]
        await store.apply(view, Delivery(0, 6, events))
        rows = await store.select(view, "total > ? AND even = ?", (1, True), "total DESC", 2)
        assert [r["id"] for r in rows] == ["s6", "s4"]
        like = await store.select(view, "label LIKE ? ESCAPE '\\'", ("%\\_3\\%%",), "id", 10)
        assert [r["id"] for r in like] == ["s3"]
        after = await store.select(view, "(total, id) > (?, ?)", (4, "s4"), "total, id", 10)
        assert [r["id"] for r in after] == ["s5", "s6"]

    async def test_a_failing_event_parks_its_stream_in_order_and_others_flow(
        self, store: ReadStore
    ) -> None:
        view = store.projection("counters")
        events = [
            recorded(1, "a", n=1), recorded(2, "a", "Broken"), recorded(3, "b", n=2),
            recorded(4, "a", n=10), recorded(5, "c", "Poison"),
        ]  # fmt: skip
        await store.apply(view, Delivery(0, 5, [*events, recorded(6, "c", n=1)][:5]))
        assert await store.load_checkpoint("counters") == 5
        assert store.parked("counters") == {"a"}  # c had no row: Poison leaves it unchanged
        assert (await store.get(view, "a") or {})["total"] == 1
        assert (await store.get(view, "b") or {})["total"] == 2
        [parked] = await store.parked_streams("counters")
        assert (parked.stream_id, parked.position, parked.event_type) == ("a", 2, "Broken")
        assert parked.events == 2 and "ValueError: not yet" in parked.error

    async def test_a_stream_parked_by_another_process_stays_parked_here(
        self, store: ReadStore, tmp_path: Path
    ) -> None:
        """The table decides, not a process's copy of it: a second store on the same data
        (opened before the stream was parked: a lease handed over, a rebuild elsewhere) parks
        the stream's later events too, in order, instead of applying them past the gap."""
        other = await self.open_store(tmp_path, [counters()])
        try:
            view = store.projection("counters")
            await store.apply(
                view, Delivery(0, 2, [recorded(1, "a", n=1), recorded(2, "a", "Broken")])
            )
            assert other.parked("counters") == frozenset()  # it has not heard of it
            await other.apply(view, Delivery(2, 3, [recorded(3, "a", n=10)]))
            assert (await other.get(view, "a") or {})["total"] == 1
            assert other.parked("counters") == {"a"}
            [parked] = await other.parked_streams("counters")
            assert (parked.position, parked.events) == (2, 2)
            # and the other way round: unparked elsewhere, applied here again
            FIXED["on"] = True
            assert await store.request("counters", "a", RETRY) == 1
            events = [recorded(2, "a", "Broken"), recorded(3, "a", n=10)]
            await store.retry(view, "a", events, skip=False)
            assert store.parked("counters") == frozenset()
            await other.apply(view, Delivery(3, 4, [recorded(4, "a", n=100)]))
            assert (await other.get(view, "a") or {})["total"] == 111
            assert other.parked("counters") == frozenset()
        finally:
            await other.close()

    async def test_a_row_a_column_cannot_hold_parks_the_stream(self, store: ReadStore) -> None:
        view = store.projection("counters")
        events = [recorded(1, "a", n=1), recorded(2, "a", "Poison"), recorded(3, "b", n=3)]
        await store.apply(view, Delivery(0, 3, events))
        [parked] = await store.parked_streams()
        assert parked.stream_id == "a" and "cannot hold" in parked.error
        assert (await store.get(view, "b") or {})["total"] == 3

    async def test_a_retry_after_a_fix_applies_the_parked_events_in_order(
        self, tmp_path: Path
    ) -> None:
        FIXED["on"] = False
        store = await self.open_store(tmp_path, [counters()])
        view = store.projection("counters")
        events = [recorded(1, "a", n=1), recorded(2, "a", "Broken"), recorded(3, "a", n=10)]
        await store.apply(view, Delivery(0, 3, events))
        await store.close()
        store = await self.open_store(tmp_path, [counters()])  # parked streams survive
        try:
            assert store.parked("counters") == {"a"}
            assert await store.request("counters", None, RETRY) == 1
            assert [p.request for p in await store.requested()] == [RETRY]
            assert await store.retry(view, "a", events, skip=False) == []  # fails again
            assert (await store.parked_streams())[0].request is None
            FIXED["on"] = True
            changes = await store.retry(view, "a", events, skip=False)
            assert [(c.id, c.position) for c in changes] == [("a", 3)]
            row = await store.get(view, "a")
            assert row is not None and (row["total"], row["label"]) == (11, "fixed")
            assert store.parked("counters") == frozenset()
            assert await store.parked_streams() == []
        finally:
            await store.close()

    async def test_a_skip_drops_the_failing_event_and_applies_the_rest(
        self, store: ReadStore
    ) -> None:
        view = store.projection("counters")
        events = [recorded(1, "a", n=1), recorded(2, "a", "Poison"), recorded(3, "a", n=5)]
        await store.apply(view, Delivery(0, 3, events))
        await store.request("counters", "a", SKIP)
        await store.retry(view, "a", events, skip=True)
        assert (await store.get(view, "a") or {})["total"] == 6
        assert await store.parked_streams() == []

    async def test_a_reset_empties_rows_parked_streams_and_checkpoint(
        self, store: ReadStore
    ) -> None:
        view = store.projection("counters")
        events = [recorded(1, "a", n=1), recorded(2, "b", "Broken")]
        await store.apply(view, Delivery(0, 2, [events[0], recorded(2, "a", "Broken")]))
        await store.reset(view)
        assert await store.load_checkpoint("counters") == 0
        assert await store.rows(view) == [] and await store.parked_streams() == []
        assert store.parked("counters") == frozenset()


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
    """`apply_all`: several projections' deliveries in one read-store transaction, all or
    nothing; given a fresh store from `open_store`, every test here must pass."""

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
