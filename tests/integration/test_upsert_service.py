"""The upsert service on real SQLite files: read models, checkpoints, notifications, rebuilds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.errors import ProjectionError, StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent
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
