"""Processes opening one new SQLite file at the same moment (`serve functions --workers 2`
creating processes.sqlite, webhooks.sqlite, ...) all open it: none fails with "database is
locked", nor with "duplicate column name" from a schema migration both ran."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from eventgate.sqlitefile import connect_sqlite
from eventgate.webhooks.store import SQLiteWebhookStore

ROUNDS = 100
OPENERS = 3


def open_together(
    opener: Callable[[Path], None], path: str, barrier: Barrier, errors: Queue[str]
) -> None:
    barrier.wait()
    try:
        opener(Path(path))
    except Exception as e:  # reported to the test, which fails on any
        errors.put(f"{type(e).__name__}: {e}")


def race(opener: Callable[[Path], None], directory: Path, rounds: int = ROUNDS) -> list[str]:
    """`rounds` times, OPENERS processes run `opener` on one new file at once; their errors."""
    context = multiprocessing.get_context("fork")
    errors: Queue[str] = context.Queue()
    for n in range(rounds):
        barrier = context.Barrier(OPENERS)
        path = str(directory / f"new-{n}.sqlite")
        openers = [
            context.Process(target=open_together, args=(opener, path, barrier, errors))
            for _ in range(OPENERS)
        ]
        for process in openers:
            process.start()
        for process in openers:
            process.join(30)
            assert process.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    return failures


def open_wal(path: Path) -> None:
    connection = connect_sqlite(path)
    connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def open_webhooks(path: Path) -> None:
    async def open_and_close() -> None:
        store = await SQLiteWebhookStore.open(path)
        await store.close()

    asyncio.run(open_and_close())


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    assert race(open_wal, tmp_path) == []


def test_processes_opening_a_new_webhook_store_together_all_succeed(tmp_path: Path) -> None:
    """Each opener adds the columns of secret rotation where they are missing (a file from
    before them); two that both found them missing both added them, and the second failed
    at start (`serve functions --workers 2` then stopped: no worker ran)."""
    assert race(open_webhooks, tmp_path, rounds=40) == []
    with sqlite3.connect(tmp_path / "new-0.sqlite") as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(webhooks)")}
    connection.close()
    assert {"previous_secret", "previous_until"} <= columns
