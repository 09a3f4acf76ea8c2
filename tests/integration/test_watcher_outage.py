"""The read-model watcher outlives its PostgreSQL: stopped (fast shutdown, which sends each
connection a FATAL before closing it) and started again on the same port, several times,
the watcher keeps running, logs the outage once rather than once a poll, and listens again
once the server is back, so a change made after the restart reaches its feed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import eventgate.projections.watcher as watcher_module
from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import CreateInventoryItem, RenameInventoryItem
from eventgate.examples.inventory.read_models import item_details
from eventgate.projections.changes import RecordChanged
from eventgate.projections.watcher import ReadModelWatcher
from tests.postgres import PostgresServer, database_for

STOPS = 6


async def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def written(system: System, command: object) -> int:
    """`command` executed on `system` and projected there; the position it reached."""
    result = await system.commands.execute(command)  # type: ignore[arg-type]
    for projection in system.upsert.projections:
        await system.upsert.follow(projection, until=result.position)
    return result.position


async def test_the_watcher_keeps_running_through_stops_of_its_postgresql(
    tmp_path: Path,
    own_postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # it pings its connection every few ms: a ping lands between the server's FATAL and
    # the connection's end (asyncpg: "cannot switch to state 15") in some of the stops
    monkeypatch.setattr(watcher_module, "SAFETY_POLL", 0.002)
    monkeypatch.setattr(watcher_module, "RECONNECT_AFTER", 0.05)
    dsn = await database_for(own_postgres.dsn, str(tmp_path), "o")
    writer = await open_system(Settings(data_dir=tmp_path / "a", database_url=dsn), inventory_app())
    reader = await open_system(Settings(data_dir=tmp_path / "b", database_url=dsn), inventory_app())
    seen: list[RecordChanged] = []
    reader.feed.listen(seen.append)
    watcher = ReadModelWatcher(reader.read_store, reader.feed, database_url=dsn, poll_interval=0.01)
    running = asyncio.create_task(watcher.run())
    caplog.set_level(logging.WARNING, logger=watcher_module.__name__)
    try:
        await written(writer, CreateInventoryItem("x", "widget"))
        for n in range(STOPS):
            await eventually(lambda: watcher.listening)
            await asyncio.to_thread(own_postgres.halt)
            await asyncio.sleep(0.5)  # polls fail meanwhile, many times
            assert not running.done(), running.exception()
            await asyncio.to_thread(own_postgres.resume)
            await eventually(lambda: watcher.listening)
            renamed = await written(writer, RenameInventoryItem("x", f"name {n}"))
            # a notification names the row: the watcher listens again
            notified = RecordChanged(item_details.name, "x", renamed)
            await eventually(lambda notified=notified: notified in seen)  # type: ignore[misc]
        assert not running.done(), running.exception()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await reader.close()
        await writer.close()
    warnings = [r for r in caplog.records if r.name == watcher_module.__name__]
    warnings = [r for r in warnings if r.levelno >= logging.WARNING]
    assert all(r.exc_info is None for r in warnings)  # no stack traces
    assert len(warnings) <= 2 * STOPS  # the outage and at most one lost listen, each stop
