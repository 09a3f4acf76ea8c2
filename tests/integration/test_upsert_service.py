"""The upsert service on real SQLite files: read models, checkpoints, notifications, rebuilds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.errors import ProjectionError, StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent, Scanned
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    DeactivateInventoryItem,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)
from eventgate.examples.inventory.read_models import item_details, item_list
from eventgate.hub import Delivery
from eventgate.projections import Projection, RecordChanged, Row
from eventgate.projections.projection import Handler


async def catch_up(system: System) -> None:
    head = await system.store.head()
    for projection in system.upsert.projections:
        await system.upsert.follow(projection, until=head)


async def run_scenario(system: System) -> None:
    run = system.commands.execute
    await run(CreateInventoryItem("a", "widget"))
    await run(CreateInventoryItem("b", "gadget"))
    await run(CheckInItemsToInventory("a", 10))
    await run(RemoveItemsFromInventory("a", 4))
    await run(RenameInventoryItem("a", "sprocket"))
    await run(DeactivateInventoryItem("b"))


async def test_the_read_models_follow_the_log(system: System) -> None:
    await run_scenario(system)
    await catch_up(system)
    assert await system.read_store.get(item_details, "a") == {
        "id": "a",
        "name": "sprocket",
        "current_count": 6,
        "version": 4,
        "active": True,
        "_position": 5,
    }
    details_b = await system.read_store.get(item_details, "b")
    assert details_b is not None and details_b["active"] is False  # a logical delete
    listed = {row["id"]: row for row in await system.read_store.rows(item_list)}
    assert listed["a"]["name"] == "sprocket" and listed["b"]["active"] is False
    statuses = {s.name: s for s in await system.upsert.status()}
    assert all(s.checkpoint == 6 and s.lag == 0 for s in statuses.values())


async def test_each_upsert_is_announced_after_it_commits(system: System) -> None:
    seen: list[RecordChanged] = []
    stop = system.feed.listen(seen.append)
    await run_scenario(system)
    await catch_up(system)
    stop()
    assert RecordChanged("inventory_item_details", "a", 5) in seen
    assert RecordChanged("inventory_item_list", "b", 6) in seen
    assert system.feed.position("inventory_item_details") == 6


async def test_the_running_service_lets_a_reader_wait_for_its_write(system: System) -> None:
    running = asyncio.create_task(system.upsert.run())
    try:
        result = await system.commands.execute(CreateInventoryItem("a", "widget"))
        async with asyncio.timeout(2):
            await system.feed.wait_for("inventory_item_details", result.position)
        assert await system.read_store.get(item_details, "a") is not None
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_a_rebuild_gives_exactly_the_rows_of_the_live_run(system: System) -> None:
    await run_scenario(system)
    await catch_up(system)
    live = {p.name: await system.read_store.rows(p) for p in system.upsert.projections}
    progress: list[int] = []
    for projection in system.upsert.projections:
        await system.upsert.rebuild(projection, progress.append)
    rebuilt = {p.name: await system.read_store.rows(p) for p in system.upsert.projections}
    assert rebuilt == live
    assert progress and progress[-1] == 6


async def test_a_delivery_that_does_not_start_at_the_checkpoint_is_refused(
    system: System,
) -> None:
    await run_scenario(system)
    await catch_up(system)
    events = await system.store.read_all()
    before = await system.read_store.get(item_details, "a")
    with pytest.raises(StaleCheckpoint):
        await system.read_store.apply(item_details, Delivery(2, 6, events[2:]))
    assert await system.read_store.get(item_details, "a") == before


async def test_checkpoint_and_rows_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    system = await open_system(settings, inventory_app())
    await run_scenario(system)
    await catch_up(system)
    await system.close()
    system = await open_system(settings, inventory_app())
    try:
        assert {s.checkpoint for s in await system.upsert.status()} == {6}
        row = await system.read_store.get(item_details, "a")
        assert row is not None and row["current_count"] == 6
    finally:
        await system.close()


def with_n(handler: Handler) -> Handler:
    """The same handler, adding a column `n` = 1 to every row it returns."""

    def wider(row: Row | None, event: RecordedEvent) -> Row | None:
        new = handler(None if row is None else {k: v for k, v in row.items() if k != "n"}, event)
        return None if new is None else {**new, "n": 1}

    return wider


async def test_a_projection_whose_shape_changed_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    system = await open_system(settings, inventory_app())
    await run_scenario(system)
    await catch_up(system)
    await system.close()

    app = inventory_app()
    wider = Projection("inventory_item_list", {"id": str, "name": str, "active": bool, "n": int})
    for type_name, handler in item_list.handlers.items():
        wider.on(type_name)(with_n(handler))
    app = type(app)(app.name, app.commands, app.events, [wider, item_details])
    system = await open_system(settings, app)
    try:
        status = {s.name: s.checkpoint for s in await system.upsert.status()}
        assert status == {"inventory_item_list": 0, "inventory_item_details": 6}
        await catch_up(system)
        assert {row["n"] for row in await system.read_store.rows(wider)} == {1}
    finally:
        await system.close()


async def test_an_unknown_projection_name_is_a_clear_error(system: System) -> None:
    with pytest.raises(ProjectionError, match="known: inventory_item_details"):
        system.read_store.projection("nope")


async def expected_rows(system: System) -> dict[str, list[Row]]:
    """Every projection's rows as a rebuild of each, alone, from the log gives them."""
    for projection in system.upsert.projections:
        await system.upsert.rebuild(projection)
    return {p.name: await system.read_store.rows(p) for p in system.upsert.projections}


async def test_projections_at_different_checkpoints_follow_one_read_of_the_log(
    system: System,
) -> None:
    await run_scenario(system)
    await system.upsert.follow(item_list, until=3)
    kept: list[int] = []
    reading = system.store.subscribe_matching

    def counted(*args: Any, **kwargs: Any) -> Any:
        async def batches() -> AsyncIterator[Scanned]:
            async for scanned in reading(*args, **kwargs):
                kept.extend(e.position for e in scanned.events)
                yield scanned

        return batches()

    system.store.subscribe_matching = counted  # type: ignore[method-assign]
    await system.upsert.follow_all([item_list, item_details], until=6)
    assert kept == [1, 2, 3, 4, 5, 6]  # read and decoded once, from the lower checkpoint
    assert {s.checkpoint for s in await system.upsert.status()} == {6}
    live = {p.name: await system.read_store.rows(p) for p in system.upsert.projections}
    assert live == await expected_rows(system)


async def test_a_reset_under_the_running_service_is_caught_up_and_nothing_doubled(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    """A reset (a rebuild starting elsewhere) moves one checkpoint under the running service:
    its next transaction, for both projections, is refused whole; it resumes from the stored
    checkpoints, each projection from its own."""
    for n in range(40):
        await system.commands.execute(CreateInventoryItem(f"i-{n}", f"item {n}"))
        await system.commands.execute(CheckInItemsToInventory(f"i-{n}", n + 1))

    async def check_in(n: int) -> None:
        for _ in range(10):
            await system.commands.execute(CheckInItemsToInventory(f"i-{n}", 1))

    caplog.set_level(logging.INFO, "eventgate.projections.service")
    running = asyncio.create_task(system.upsert.run())
    try:
        async with asyncio.timeout(10):
            await system.feed.wait_for(item_details.name, 80)
        await system.read_store.reset(item_details)
        await asyncio.gather(*(check_in(n) for n in range(40)))
        head = await system.store.head()
        async with asyncio.timeout(10):
            for projection in system.upsert.projections:
                while await system.read_store.load_checkpoint(projection.name) < head:
                    await system.feed.wait_for(projection.name, head)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert "resuming from the stored checkpoints" in caplog.text
    counts = {r["id"]: r["current_count"] for r in await system.read_store.rows(item_details)}
    assert counts == {f"i-{n}": n + 11 for n in range(40)}
    live = {p.name: await system.read_store.rows(p) for p in system.upsert.projections}
    assert live == await expected_rows(system)
