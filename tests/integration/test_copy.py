"""`eventgate copy`: a SQLite data directory's events into PostgreSQL, read models rebuilt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.eventstore.model import NewEvent
from eventgate.eventstore.postgres import PostgresEventStore
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    RenameInventoryItem,
)
from eventgate.examples.inventory.read_models import item_details
from eventgate.projections.postgres import PostgresReadStore
from tests.postgres import ROOT, database_for

pytestmark = pytest.mark.slow


def copy(source: Path, url: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", "copy", "--from", str(source), "--to", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


async def test_events_are_copied_as_stored_and_the_read_models_rebuilt(
    tmp_path: Path, postgres_dsn: str
) -> None:
    source = tmp_path / "data"
    system = await open_system(Settings(data_dir=source), inventory_app())
    for n in range(30):
        await system.commands.execute(CreateInventoryItem(f"i-{n}", f"item {n}"))
        await system.commands.execute(CheckInItemsToInventory(f"i-{n}", n + 1))
    await system.commands.execute(RenameInventoryItem("i-0", "first"))
    original = await system.store.read_all(limit=1000)
    await system.close()
    url = await database_for(postgres_dsn, str(tmp_path), "c")

    copied = copy(source, url)
    assert copied.returncode == 0, copied.stderr
    assert "copied 61 new event(s) of 61" in copied.stdout and "rebuilt" in copied.stdout

    store = await PostgresEventStore.open(url)
    try:
        assert await store.read_all(limit=1000) == original  # ids, positions, data, times
        [added] = await store.append("i-0", [NewEvent("Noted", {})], expected_version=3)
        assert added.stream_version == 4 and added.position > original[-1].position
    finally:
        await store.close()
    read_store = await PostgresReadStore.open(url, inventory_app().projections)
    try:
        rows = await read_store.rows(item_details)
        assert len(rows) == 30
        assert (await read_store.get(item_details, "i-0") or {})["name"] == "first"
        assert (await read_store.get(item_details, "i-29") or {})["current_count"] == 30
    finally:
        await read_store.close()

    again = copy(source, url)
    assert again.returncode == 0 and "copied 0 new event(s) of 61" in again.stdout
    missing = copy(tmp_path / "nowhere", url)
    assert missing.returncode == 1 and "no event store" in missing.stderr
    assert "Traceback" not in missing.stderr


def eventgate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)


async def test_migrate_records_each_schema_and_refuses_a_newer_one(
    tmp_path: Path, postgres_dsn: str
) -> None:
    url = await database_for(postgres_dsn, str(tmp_path), "m")
    data = str(tmp_path / "data")
    for _ in range(2):  # the second run changes nothing
        migrated = eventgate("migrate", "--data", data, "--database-url", url)
        assert migrated.returncode == 0, migrated.stderr
        for component in ("events", "functions", "idempotency", "keys", "processes", "read_models"):
            assert f"{component}" in migrated.stdout
        assert "is up to date" in migrated.stdout
    connection = await asyncpg.connect(url)
    try:
        assert (
            await connection.fetchval(
                "SELECT version FROM eventgate_schema WHERE component = 'events'"
            )
            == 1
        )
        await connection.execute(
            "UPDATE eventgate_schema SET version = 99 WHERE component = 'events'"
        )
    finally:
        await connection.close()
    newer = eventgate("migrate", "--data", data, "--database-url", url)
    assert newer.returncode == 1 and "version 99, newer than the 1" in newer.stderr
    assert len(newer.stderr.strip().splitlines()) == 1
    without = eventgate("migrate", "--data", data)
    assert without.returncode == 1 and "needs --database-url" in without.stderr
