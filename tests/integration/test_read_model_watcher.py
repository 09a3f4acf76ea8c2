"""Read-model changes made by another process reach this one's change feed (the watcher).

Two "processes" share one database in each test: side A runs the projections, side B never
does and follows A's changes only through its `ReadModelWatcher`: PostgreSQL's
notifications (with polling while they are down), or polling the checkpoints on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import eventgate.projections.watcher as watcher_module
from eventgate import App, Command, Projection, RecordedEvent, Row
from eventgate.bootstrap import System, open_system, read_model_watcher
from eventgate.commands.handler import CommandResult
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    COMMANDS,
    EVENTS,
    CheckInItemsToInventory,
    CreateInventoryItem,
    InventoryItem,
    InventoryItemCreated,
    RenameInventoryItem,
)
from eventgate.examples.inventory.read_models import item_details, item_list
from eventgate.projections.changes import ALL_ROWS, RecordChanged
from eventgate.projections.parking import SKIP
from eventgate.projections.watcher import ReadModelWatcher
from eventgate.queries.cache import ViewCache
from tests.postgres import database_for

DETAILS = item_details.name
QUICK = 1.0
"""Seconds within which a notified change must reach the other side (it takes ms)."""

# -- an app whose one read model cannot show names with "!" (its streams get parked) ------

fragile = Projection("fragile_names", {"id": str, "name": str})


@fragile.on(InventoryItemCreated)
def _named(row: Row | None, event: RecordedEvent) -> Row:
    if "!" in event.data["name"]:
        raise ValueError("this read model cannot show a '!'")
    return {"id": event.stream_id, "name": event.data["name"]}


def fragile_app() -> App:
    return App(
        "fragile",
        commands=dict.fromkeys(COMMANDS, InventoryItem),
        events=EVENTS,
        projections=[item_details, fragile],
    )


# -- the two sides ----------------------------------------------------------------------


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Return once `check()` holds; fail if it does not within `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


async def write(system: System, *commands: Command) -> int:
    """Execute `commands` on `system` and project them there; returns the new head."""
    results: list[CommandResult] = [await system.commands.execute(c) for c in commands]
    head = await system.store.head()
    assert results[-1].position == head
    for projection in system.upsert.projections:
        await system.upsert.follow(projection, until=head)
    return head


@dataclass
class Reader:
    """Side B: a query side with its own feed, cache and watcher, running no projections."""

    system: System
    watcher: ReadModelWatcher
    cache: ViewCache
    seen: list[RecordChanged]
    loads: Counter[str]

    async def row(self, key: str) -> Any:
        """Row `key` of the item details, through B's cache (`loads` counts misses)."""

        async def load() -> Any:
            self.loads[key] += 1
            return await self.system.read_store.get(item_details, key)

        return await self.cache.row(DETAILS, key, load)

    def changed_since(self, mark: int) -> set[tuple[str, str]]:
        """(view, row) of each change B's feed announced after the first `mark` ones."""
        return {(change.view, change.id) for change in self.seen[mark:]}

    def reached(self, position: int, view: str = DETAILS) -> Callable[[], bool]:
        return lambda: self.system.feed.position(view) >= position


@contextlib.asynccontextmanager
async def watching(
    system: System, watcher: ReadModelWatcher | None = None
) -> AsyncIterator[Reader]:
    """Run a watcher for `system` (side B) until the block ends."""
    watcher = watcher or read_model_watcher(system)
    cache = ViewCache(system.feed, [item_details.name, item_list.name])
    seen: list[RecordChanged] = []
    stop = system.feed.listen(seen.append)
    running = asyncio.create_task(watcher.run())
    try:
        yield Reader(system, watcher, cache, seen, Counter())
    finally:
        stop()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


@contextlib.asynccontextmanager
async def two_systems(
    a: Settings, b: Settings, app: Callable[[], App] = inventory_app
) -> AsyncIterator[tuple[System, System]]:
    """Side A and side B, opened on the same database as two processes would."""
    first = await open_system(a, app())
    try:
        second = await open_system(b, app())
        try:
            yield first, second
        finally:
            await second.close()
    finally:
        await first.close()


@pytest.fixture
async def pg_dsn(postgres_dsn: str, tmp_path: Path) -> str:
    return await database_for(postgres_dsn, str(tmp_path), "w")


def pg_settings(tmp_path: Path, dsn: str) -> tuple[Settings, Settings]:
    return (
        Settings(data_dir=tmp_path / "a", database_url=dsn, poll_interval=0.05),
        Settings(data_dir=tmp_path / "b", database_url=dsn, poll_interval=0.05),
    )


def sqlite_settings(tmp_path: Path) -> tuple[Settings, Settings]:
    shared = Settings(data_dir=tmp_path / "data", poll_interval=0.05)
    return shared, shared


@pytest.fixture
def notified_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No safety polls while listening: what reaches B quickly came by notification."""
    monkeypatch.setattr(watcher_module, "SAFETY_POLL", 30.0)


# -- PostgreSQL: notifications ----------------------------------------------------------


@pytest.mark.usefixtures("notified_only")
async def test_a_change_on_a_reaches_b_and_evicts_only_its_row(tmp_path: Path, pg_dsn: str) -> None:
    async with two_systems(*pg_settings(tmp_path, pg_dsn)) as (a, b):
        created = await write(
            a, CreateInventoryItem("x", "widget"), CreateInventoryItem("y", "gear")
        )
        async with watching(b) as reader:
            await eventually(lambda: reader.watcher.listening)
            await eventually(reader.reached(created))  # its first poll found A's work
            assert (await reader.row("x"))["name"] == "widget"
            assert (await reader.row("y"))["name"] == "gear"
            assert (await reader.row("x"))["name"] == "widget"
            assert reader.loads == {"x": 1, "y": 1}  # cached

            renamed = await write(a, RenameInventoryItem("x", "sprocket"))
            async with asyncio.timeout(QUICK):
                await b.feed.wait_for(DETAILS, renamed)
            await eventually(reader.reached(renamed, item_list.name), within=QUICK)
            assert RecordChanged(DETAILS, "x", renamed) in reader.seen
            assert RecordChanged(item_list.name, "x", renamed) in reader.seen
            assert (await reader.row("x"))["name"] == "sprocket"  # not the cached "widget"
            assert (await reader.row("y"))["name"] == "gear"
            assert reader.loads == {"x": 2, "y": 1}  # the notice named x only
            assert b.feed.position(item_list.name) == renamed
            assert reader.watcher.listening


@pytest.mark.usefixtures("notified_only")
async def test_a_consistency_wait_on_b_wakes_for_a_write_on_a(tmp_path: Path, pg_dsn: str) -> None:
    async with two_systems(*pg_settings(tmp_path, pg_dsn)) as (a, b):
        # Projecting a first write one projection at a time opens A's event store's LISTEN
        # connection before the live run starts, so the run's subscribers (which start
        # together) share it: PostgresEventStore._listen, entered by several subscribers at
        # once, opens a connection for each and never closes all but the last.
        first = await write(a, CreateInventoryItem("first", "widget"))
        projecting = asyncio.create_task(a.upsert.run())  # A runs its projections live
        try:
            async with watching(b) as reader:
                await eventually(lambda: reader.watcher.listening)
                await eventually(reader.reached(first))
                mark = len(reader.seen)
                loop = asyncio.get_running_loop()
                for n in range(3):
                    after = await a.store.head() + 1  # positions grow, though not by one
                    waiting = asyncio.create_task(b.feed.wait_for(DETAILS, after))
                    await asyncio.sleep(0)
                    assert not waiting.done()
                    started = loop.time()
                    result = await a.commands.execute(CreateInventoryItem(f"i{n}", "widget"))
                    assert result.position >= after
                    async with asyncio.timeout(QUICK):
                        await waiting
                    assert loop.time() - started < QUICK
                    assert b.feed.position(DETAILS) == result.position
                    assert (await reader.row(f"i{n}"))["name"] == "widget"
                changed = reader.changed_since(mark)
                assert {(DETAILS, "i0"), (DETAILS, "i1"), (DETAILS, "i2")} <= changed
                assert (DETAILS, ALL_ROWS) not in changed  # notified row by row
        finally:
            projecting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await projecting


@contextlib.asynccontextmanager
async def watcher_role(dsn: str, key: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A login role of its own for the watcher's connection, so that the test can find it
    (to kill it) and keep it from connecting again; yields its DSN and an admin connection."""
    role = "watcher_" + hashlib.sha256(key.encode()).hexdigest()[:12]
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            yield dsn.replace("//postgres@", f"//{role}@", 1), admin
        finally:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()


async def test_while_the_listening_connection_is_down_changes_are_polled(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "SAFETY_POLL", 0.1)  # notices a dead connection soon
    monkeypatch.setattr(watcher_module, "RECONNECT_AFTER", 0.1)
    async with (
        watcher_role(pg_dsn, str(tmp_path)) as (url, admin),
        two_systems(*pg_settings(tmp_path, pg_dsn)) as (a, b),
    ):
        role = url.split("//", 1)[1].split("@", 1)[0]
        watcher = ReadModelWatcher(b.read_store, b.feed, database_url=url, poll_interval=0.05)
        created = await write(a, CreateInventoryItem("x", "widget"))
        async with watching(b, watcher) as reader:
            await eventually(lambda: watcher.listening)
            await eventually(reader.reached(created))
            assert (await reader.row("x"))["name"] == "widget"

            # The connection dies, and cannot come back until the role may log in again.
            await admin.execute(f"ALTER ROLE {role} NOLOGIN")
            killed = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
            )
            assert [tuple(r) for r in killed] == [(True,)]
            await eventually(lambda: not watcher.listening)

            mark = len(reader.seen)
            renamed = await write(a, RenameInventoryItem("x", "sprocket"))
            await eventually(reader.reached(renamed))
            assert (DETAILS, ALL_ROWS) in reader.changed_since(mark)  # by polling
            assert (DETAILS, "x") not in reader.changed_since(mark)  # nobody listened
            assert (await reader.row("x"))["name"] == "sprocket"
            assert not watcher.listening

            await admin.execute(f"ALTER ROLE {role} LOGIN")
            await eventually(lambda: watcher.listening)  # it listens again
            checked_in = await write(a, CheckInItemsToInventory("x", 5))
            notified = RecordChanged(DETAILS, "x", checked_in)
            await eventually(lambda: notified in reader.seen)  # a notice names the row
            assert (await reader.row("x"))["current_count"] == 5


# -- SQLite: polling --------------------------------------------------------------------


async def test_on_sqlite_b_follows_a_by_polling_and_empties_its_cache(tmp_path: Path) -> None:
    async with two_systems(*sqlite_settings(tmp_path)) as (a, b):
        created = await write(
            a, CreateInventoryItem("x", "widget"), CreateInventoryItem("y", "gear")
        )
        async with watching(b) as reader:
            await eventually(reader.reached(created))
            await eventually(reader.reached(created, item_list.name))
            assert (await reader.row("x"))["name"] == "widget"
            assert (await reader.row("y"))["name"] == "gear"
            assert (await reader.row("y"))["name"] == "gear"
            assert reader.loads == {"x": 1, "y": 1}

            mark = len(reader.seen)
            renamed = await write(a, RenameInventoryItem("x", "sprocket"))
            async with asyncio.timeout(QUICK):  # a poll may fall between A's two projections
                await b.feed.wait_for(DETAILS, renamed)
                await b.feed.wait_for(item_list.name, renamed)
            assert reader.changed_since(mark) >= {(DETAILS, ALL_ROWS), (item_list.name, ALL_ROWS)}
            assert (await reader.row("x"))["name"] == "sprocket"
            assert (await reader.row("y"))["name"] == "gear"
            assert reader.loads == {"x": 2, "y": 2}  # every row of the view was evicted
            assert not reader.watcher.listening


async def test_a_poll_announces_each_view_found_ahead_once(tmp_path: Path) -> None:
    async with two_systems(*sqlite_settings(tmp_path)) as (a, b):
        created = await write(a, CreateInventoryItem("x", "widget"))
        watcher = ReadModelWatcher(b.read_store, b.feed)
        seen: list[RecordChanged] = []
        stop = b.feed.listen(seen.append)
        try:
            await watcher.poll()
            assert {(c.view, c.id) for c in seen} == {
                (item_list.name, ALL_ROWS),
                (DETAILS, ALL_ROWS),
            }
            assert b.feed.position(DETAILS) == b.feed.position(item_list.name) == created
            await watcher.poll()  # the feed is where the checkpoints are
            assert len(seen) == 2
        finally:
            stop()


# -- parked streams ---------------------------------------------------------------------


@pytest.mark.usefixtures("notified_only")
async def test_a_stream_parked_on_a_is_parked_on_b_after_the_notification(
    tmp_path: Path, pg_dsn: str
) -> None:
    async with (
        two_systems(*pg_settings(tmp_path, pg_dsn), app=fragile_app) as (a, b),
        watching(b) as reader,
    ):
        await eventually(lambda: reader.watcher.listening)
        good = await write(a, CreateInventoryItem("fine", "widget"))
        await eventually(reader.reached(good, fragile.name), within=QUICK)
        assert b.read_store.parked(fragile.name) == frozenset()

        parked = await write(a, CreateInventoryItem("bad", "wid!get"))
        assert a.read_store.parked(fragile.name) == {"bad"}
        await eventually(reader.reached(parked, fragile.name), within=QUICK)
        assert b.read_store.parked(fragile.name) == {"bad"}
        assert b.read_store.parked(DETAILS) == frozenset()

        # An operator skips the event on A: B learns the stream is no longer parked.
        assert await a.read_store.request(fragile.name, "bad", SKIP) == 1
        assert await a.upsert.handle_requests() == 1
        assert a.read_store.parked(fragile.name) == frozenset()
        await eventually(lambda: not b.read_store.parked(fragile.name), within=QUICK)


async def test_on_sqlite_a_stream_parked_on_a_is_parked_on_b_after_a_poll(
    tmp_path: Path,
) -> None:
    async with (
        two_systems(*sqlite_settings(tmp_path), app=fragile_app) as (a, b),
        watching(b) as reader,
    ):
        good = await write(a, CreateInventoryItem("fine", "widget"))
        await eventually(reader.reached(good, fragile.name))
        assert b.read_store.parked(fragile.name) == frozenset()
        parked = await write(a, CreateInventoryItem("bad", "wid!get"))
        await eventually(reader.reached(parked, fragile.name))
        assert b.read_store.parked(fragile.name) == {"bad"}
        assert b.read_store.parked(DETAILS) == frozenset()


async def test_b_opened_after_the_parking_knows_it_at_once(tmp_path: Path, pg_dsn: str) -> None:
    a_settings, b_settings = pg_settings(tmp_path, pg_dsn)
    a = await open_system(a_settings, fragile_app())
    try:
        await write(a, CreateInventoryItem("bad", "!"))
        b = await open_system(b_settings, fragile_app())
        try:
            assert b.read_store.parked(fragile.name) == {"bad"}
        finally:
            await b.close()
    finally:
        await a.close()


async def test_on_sqlite_a_skip_and_a_rebuild_on_a_reach_b_by_polling(tmp_path: Path) -> None:
    await skip_and_rebuild_reach_b(sqlite_settings(tmp_path))


async def test_on_postgresql_a_skip_and_a_rebuild_reach_b_by_polling(
    tmp_path: Path, pg_dsn: str
) -> None:
    await skip_and_rebuild_reach_b(pg_settings(tmp_path, pg_dsn))


async def skip_and_rebuild_reach_b(settings: tuple[Settings, Settings]) -> None:
    """Neither moves a checkpoint ahead: the change counter tells B that the view changed."""
    async with two_systems(*settings, app=fragile_app) as (a, b):
        watcher = ReadModelWatcher(b.read_store, b.feed)  # no database URL: polls only
        await write(a, CreateInventoryItem("bad", "wid!get"))
        await watcher.poll()
        assert b.read_store.parked(fragile.name) == {"bad"}

        assert await a.read_store.request(fragile.name, "bad", SKIP) == 1
        assert await a.upsert.handle_requests() == 1
        seen: list[RecordChanged] = []
        stop = b.feed.listen(seen.append)
        try:
            await watcher.poll()
            assert b.read_store.parked(fragile.name) == frozenset()
            assert (fragile.name, ALL_ROWS) in {(c.view, c.id) for c in seen}

            seen.clear()
            await a.upsert.rebuild(a.read_store.projection(DETAILS))
            await watcher.poll()
            assert (DETAILS, ALL_ROWS) in {(c.view, c.id) for c in seen}
            await watcher.poll()  # nothing changed since
            assert len([c for c in seen if c.view == DETAILS]) == 1
        finally:
            stop()


async def test_a_notification_over_postgresqls_size_limit_names_no_keys(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Many multi-byte keys in one batch: the notice says "every row" instead of failing
    the batch's transaction (8000 bytes, counted in bytes, not characters)."""
    async with two_systems(*pg_settings(tmp_path, pg_dsn)) as (a, b), watching(b) as reader:
        await eventually(lambda: reader.watcher.listening)
        commands = [CreateInventoryItem(f"{n:03d}" + "é" * 40, "widget") for n in range(300)]
        head = await write(a, *commands)
        await eventually(reader.reached(head), within=QUICK)
        assert (DETAILS, ALL_ROWS) in reader.changed_since(0)
