"""Processes opening one new SQLite file at the same moment (`serve functions --workers 2`
creating processes.sqlite) all get a WAL connection: none fails with "database is locked"."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from eventgate.sqlitefile import connect_sqlite

ROUNDS = 100
OPENERS = 3


def open_together(path: str, barrier: Barrier, errors: Queue[str]) -> None:
    barrier.wait()
    try:
        connection = connect_sqlite(Path(path))
        connection.execute("CREATE TABLE IF NOT EXISTS t (x)")
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        connection.close()
    except Exception as e:  # reported to the test, which fails on any
        errors.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    errors: Queue[str] = context.Queue()
    for n in range(ROUNDS):
        barrier = context.Barrier(OPENERS)
        path = str(tmp_path / f"new-{n}.sqlite")
        openers = [
            context.Process(target=open_together, args=(path, barrier, errors))
            for _ in range(OPENERS)
        ]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
            assert opener.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
