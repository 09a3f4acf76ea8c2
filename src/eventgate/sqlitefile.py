"""One SQLite file served off the event loop: a writer thread and a small pool of readers.

SQLite calls block, so every call runs on a thread. All writes go through one thread
(SQLite admits one writer at a time anyway, and one thread lets us batch); reads run on
their own threads with their own connections, which WAL lets proceed while a write is
in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SQLiteFile", "connect_sqlite", "in_chunks", "write_transaction"]

T = TypeVar("T")


def connect_sqlite(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode, in WAL mode, with the given synchronous level."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        _use_wal(connection, time.monotonic() + _LOCK_WAIT)
        connection.execute(f"PRAGMA synchronous={_SYNCHRONOUS[synchronous]}")
    except BaseException:
        connection.close()
        raise
    return connection


def _use_wal(connection: sqlite3.Connection, deadline: float) -> None:
    """Switch to WAL. Processes opening a new file together can each hold a read lock and
    want the write lock; SQLite then fails one at once ("database is locked") instead of
    calling the busy handler, so that one tries again until the deadline."""
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


_LOCK_WAIT = 30.0


_SYNCHRONOUS = {"FULL": "FULL", "NORMAL": "NORMAL"}  # the only two levels eventgate uses


@contextlib.contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` (take the write lock now), COMMIT on success, ROLLBACK on any error."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def in_chunks(keys: Iterable[str], size: int = 500) -> Iterator[tuple[list[str], str]]:
    """`keys` in sorted chunks, each with its `?, ?, ...` placeholders for an IN (...) list
    (SQLite caps the bound parameters of one statement)."""
    ordered = sorted(keys)
    for first in range(0, len(ordered), size):
        chunk = ordered[first : first + size]
        yield chunk, ", ".join("?" * len(chunk))


class SQLiteFile:
    """Thread-bound connections to one file; `on_writer`/`on_reader` run calls on them."""

    def __init__(
        self, path: Path, *, name: str, readers: int = 2, synchronous: str = "FULL"
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix=f"{name}-reader")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect_sqlite(self.path, self._synchronous)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    async def on_writer(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the single writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    async def on_reader(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, function, *args)

    async def close(self) -> None:
        """Wait for running calls, then close every connection."""
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
