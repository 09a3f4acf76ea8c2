"""The event store on one SQLite file: WAL, synchronous=FULL, appends group-committed.

Why it is correct:
- Every append goes through one writer thread that opens `BEGIN IMMEDIATE`, so writers
  (also in other processes on the same file) are serialised by SQLite's write lock.
- Inside that lock the writer reads the head position and each stream's version, checks
  the expected versions, and inserts with explicit positions head+1, head+2, ... A
  transaction commits atomically, so readers see all of a batch or none of it, and
  positions become visible strictly in order: a gap can never be filled in later.
- `UNIQUE(stream_id, stream_version)` backs the version check with a constraint.
- Appends that arrive while a batch is being written wait for the next batch: one
  fsync then serves many appenders (group commit). Each append in a batch is its own
  SAVEPOINT, so one failing append never takes its neighbours down with it.
- `synchronous=FULL` makes every COMMIT durable before `append` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventgate.errors import ConcurrencyError, EventgateError, EventStoreError
from eventgate.eventstore.model import NewEvent, RecordedEvent
from eventgate.eventstore.protocol import ANY_VERSION
from eventgate.eventstore.upcasting import Upcasters
from eventgate.sqlitefile import SQLiteFile

__all__ = ["SQLiteEventStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL CHECK (stream_version > 0),
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    time           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    UNIQUE (stream_id, stream_version)
);
"""
_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, time, data, metadata"
)
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_MAX_BATCH_EVENTS = 5000


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass
class _Append:
    stream_id: str
    events: list[NewEvent]
    expected_version: int | None
    future: asyncio.Future[list[RecordedEvent]]


class SQLiteEventStore:
    """`EventStore` on a SQLite file; open it with `await SQLiteEventStore.open(path)`."""

    def __init__(
        self, path: Path, *, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> None:
        self.path = Path(path)
        self._file = SQLiteFile(self.path, name="eventstore")
        self._upcasters = upcasters or Upcasters()
        self._poll_interval = poll_interval
        self._queue: list[_Append] = []
        self._flusher: asyncio.Task[None] | None = None
        self._signal = asyncio.Event()
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> SQLiteEventStore:
        """Open (creating if needed) the store file at `path`."""
        store = cls(path, upcasters=upcasters, poll_interval=poll_interval)
        try:
            await store._file.on_writer(store._create_schema)
        except sqlite3.Error as e:
            await store.close()
            raise EventStoreError(f"cannot open event store {path}: {e}") from e
        return store

    # -- appending --------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | None = ANY_VERSION,
    ) -> list[RecordedEvent]:
        """Append atomically and durably; `ConcurrencyError` if the version check fails."""
        self._check_open()
        _check_append(stream_id, events, expected_version)
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Append(stream_id, list(events), expected_version, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="eventstore-flush")
        # Shielded: a caller that gives up does not retract an append already queued.
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take_batch()
            try:
                outcomes = await self._file.on_writer(self._write, batch)
            except sqlite3.Error as e:
                error = EventStoreError(f"append failed, nothing written: {e}")
                outcomes = [error] * len(batch)
            for request, outcome in zip(batch, outcomes, strict=True):
                if request.future.done():
                    continue
                if isinstance(outcome, Exception):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome)
            self._signal.set()
            self._signal = asyncio.Event()

    def _take_batch(self) -> list[_Append]:
        size = 0
        for taken, request in enumerate(self._queue):
            size += len(request.events)
            if size > _MAX_BATCH_EVENTS and taken > 0:
                break
        else:
            taken = len(self._queue)
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _write(self, batch: list[_Append]) -> list[list[RecordedEvent] | EventgateError]:
        """One transaction for the whole batch (runs on the writer thread)."""
        connection = self._file.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            head = connection.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
            position: int = head[0]
            time = datetime.now(UTC)
            outcomes: list[list[RecordedEvent] | EventgateError] = []
            for request in batch:
                outcome = self._write_one(connection, request, position, time)
                if isinstance(outcome, list) and outcome:
                    position = outcome[-1].position
                outcomes.append(outcome)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

    def _write_one(
        self, connection: sqlite3.Connection, request: _Append, position: int, time: datetime
    ) -> list[RecordedEvent] | EventgateError:
        row = connection.execute(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?",
            (request.stream_id,),
        ).fetchone()
        version: int = row[0]
        expected = request.expected_version
        if expected is not None and expected != version:
            return ConcurrencyError(request.stream_id, expected, version)
        recorded = [
            RecordedEvent(
                id=event.id,
                stream_id=request.stream_id,
                stream_version=version + offset,
                position=position + offset,
                type=event.type,
                schema_version=event.schema_version,
                time=time,
                data=event.data,
                metadata=event.metadata,
            )
            for offset, event in enumerate(request.events, start=1)
        ]
        stamp = time.isoformat()
        rows = [
            (e.position, e.id, e.stream_id, e.stream_version, e.type, e.schema_version, stamp,
             _dumps(e.data), _dumps(e.metadata))
            for e in recorded
        ]  # fmt: skip
        connection.execute("SAVEPOINT append")
        try:
            connection.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as e:
            connection.execute("ROLLBACK TO append")
            return EventStoreError(f"append to {request.stream_id!r} rejected: {e}")
        finally:
            connection.execute("RELEASE append")
        return recorded

    # -- reading ----------------------------------------------------------------------

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        """The events of `stream_id` with version >= `from_version`, oldest first."""
        self._check_open()
        return await self._file.on_reader(
            self._select,
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND stream_version >= ? "
            "ORDER BY stream_version",
            (stream_id, from_version),
        )

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to `limit` events with position > `after`, in position order."""
        self._check_open()
        return await self._file.on_reader(
            self._select,
            f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, limit),
        )

    async def head(self) -> int:
        """The highest committed position, 0 when the store is empty."""
        self._check_open()
        return await self._file.on_reader(self._head)

    async def subscribe(
        self, after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after `after`, forever; woken by appends here, polling for other processes."""
        while True:
            signal = self._signal  # taken before reading, so no append's wake-up is missed
            batch = await self.read_all(after, batch_size)
            if batch:
                after = batch[-1].position
                yield batch
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), self._poll_interval)

    def _select(self, sql: str, parameters: tuple[Any, ...]) -> list[RecordedEvent]:
        rows = self._file.connection().execute(sql, parameters).fetchall()
        return [self._decode(row) for row in rows]

    def _head(self) -> int:
        row = self._file.connection().execute("SELECT COALESCE(MAX(position), 0) FROM events")
        head: int = row.fetchone()[0]
        return head

    def _decode(self, row: tuple[Any, ...]) -> RecordedEvent:
        position, event_id, stream_id, version, type_name, schema, time, data, metadata = row
        schema, payload = self._upcasters.upcast(type_name, schema, json.loads(data))
        return RecordedEvent(
            id=event_id,
            stream_id=stream_id,
            stream_version=version,
            position=position,
            type=type_name,
            schema_version=schema,
            time=datetime.fromisoformat(time),
            data=payload,
            metadata=json.loads(metadata),
        )

    # -- plumbing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Write what is queued, then close every connection and thread."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            await self._flusher
        await self._file.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreError("the event store is closed")

    def _create_schema(self) -> None:
        self._file.connection().executescript(_SCHEMA)


def _check_append(stream_id: str, events: Sequence[NewEvent], expected: int | None) -> None:
    if not isinstance(stream_id, str) or not stream_id:
        raise EventStoreError("stream id must be a non-empty string")
    if expected is not None and (isinstance(expected, bool) or expected < 0):
        raise EventStoreError(f"expected version must be None or >= 0, not {expected!r}")
    ids = [event.id for event in events]
    if len(set(ids)) != len(ids):
        raise EventStoreError("one append cannot hold the same event id twice")
