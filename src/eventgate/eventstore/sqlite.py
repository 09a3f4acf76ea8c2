"""The event store on one SQLite file: WAL, synchronous=FULL, appends group-committed.

Why it is correct:
- Every append goes through one writer thread that opens `BEGIN IMMEDIATE`, so writers
  (also in other processes on the same file) are serialised by SQLite's write lock.
- Inside that lock the writer reads the head position and each stream's version, checks
  the expected versions, and inserts with explicit positions head+1, head+2, ... A
  transaction commits atomically, so readers see all of a batch or none of it, and
  positions become visible strictly in order: a gap can never be filled in later.
- `UNIQUE(stream_id, stream_version)` backs the version check with a constraint. An
  append that expects a new stream (`NO_STREAM`) is not looked up: its first event goes in
  at version 1, which the constraint refuses if the stream exists (versions have no gaps).
  Nor is a stream this store wrote since it last saw another writer's commit: the writer
  keeps the versions it committed, and drops them all when the head is not where its own
  last commit left it.
- Appends that arrive while a batch is being written wait for the next batch: one
  fsync then serves many appenders (group commit). A failed version check fails only its
  own append; if a constraint fails, the batch is redone with every stream looked up, and
  if it fails again (an event id stored before), with a SAVEPOINT per append, so one bad
  append never takes its neighbours down with it.
- `synchronous=FULL` makes every COMMIT durable before `append` returns.
- Subscribers in this process read what it committed last from memory (its tail): the
  rows of each batch, kept once the batch has committed, in position order. The tail is
  emptied when a batch does not follow it (another process wrote in between), and a
  subscriber it does not cover, or that has heard of no append here for a poll interval,
  reads the file, so it never skips what other processes wrote.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eventgate.errors import ConcurrencyError, DuplicateEvent, EventgateError, EventStoreError
from eventgate.eventstore.model import (
    NewEvent,
    RecordedEvent,
    Scanned,
    check_append,
    encode_json,
    keep_all,
)
from eventgate.eventstore.protocol import ANY_VERSION, NO_STREAM
from eventgate.eventstore.upcasting import Upcasters
from eventgate.metrics.families import record_commit
from eventgate.sqlitefile import SQLiteFile, in_chunks, write_transaction

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
CREATE INDEX IF NOT EXISTS events_by_command ON events (json_extract(metadata, '$.commandId'));
CREATE INDEX IF NOT EXISTS events_by_cause ON events (json_extract(metadata, '$.causationId'));
"""
_COLUMNS = (
    "position, stream_version, time, event_id, stream_id, type, schema_version, data, metadata"
)
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_STREAM, _TYPE = 4, 5  # where a row of `_COLUMNS` has its stream id and type
_TAIL_EVENTS = 5000
"""At least how many of the rows it committed last a store keeps for its subscribers."""
_MAX_BATCH_EVENTS = 5000
_KNOWN_STREAMS = 100_000
"""At most how many streams' versions the writer keeps."""
_PASSES = ("trusting", "checked", "isolated")
"""How a batch is written, each pass only if the one before hit a constraint: new streams
taken on trust (the constraint checks them), then every stream looked up, then a SAVEPOINT
per append."""


@dataclass(slots=True)
class _Append:
    stream_id: str
    events: list[NewEvent]
    rows: list[tuple[Any, ...]]
    """Each event's row after its position, version and time (`_INSERT`'s order), built by
    the caller: event id, stream id, type, schema version, data and metadata JSON."""
    expected_version: int | None
    future: asyncio.Future[_Landed]


@dataclass(frozen=True)
class _Landed:
    """Where an append landed: the version and position just before its first event."""

    version: int
    position: int
    time: datetime


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
        self._tail: list[tuple[Any, ...]] = []  # rows in `_COLUMNS` order, positions dense
        # the writer thread's own: stream versions as of `_known_head`, its last commit
        self._known: dict[str, int] = {}
        self._known_head = -1
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
        check_append(stream_id, events, expected_version)
        # Encoding, the rows and the result are built here, on the caller's turn, so the
        # writer thread does little but SQL (it shares the GIL with the event loop).
        rows = [
            (event.id, stream_id, event.type, event.schema_version, encode_json(event.data),
             encode_json(event.metadata))
            for event in events
        ]  # fmt: skip
        future: asyncio.Future[_Landed] = asyncio.get_running_loop().create_future()
        self._queue.append(_Append(stream_id, list(events), rows, expected_version, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="eventstore-flush")
        # A caller cancelled while waiting does not retract the append: it may still commit.
        landed = await future
        return _recorded(stream_id, events, landed)

    async def _flush(self) -> None:
        while self._queue:
            batch = self._take_batch()
            try:
                outcomes, written = await self._file.on_writer(self._write, batch)
            except sqlite3.Error as e:
                error = EventStoreError(f"append failed, nothing written: {e}")
                outcomes, written = [error] * len(batch), []
            except BaseException as e:
                # Never strand a waiting appender: fail the batch loudly, then stop.
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(e)
                raise
            for request, outcome in zip(batch, outcomes, strict=True):
                if request.future.done():
                    continue
                if isinstance(outcome, Exception):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome)
            appended = sum(not isinstance(outcome, Exception) for outcome in outcomes)
            record_commit("sqlite", appended, len(written))
            self._remember(written)
            self._signal.set()
            self._signal = asyncio.Event()

    def _remember(self, rows: list[tuple[Any, ...]]) -> None:
        """Keep a committed batch's rows in the tail, if they follow it without a gap."""
        if not rows:
            return
        tail = self._tail
        if tail and rows[0][0] != tail[-1][0] + 1:
            tail.clear()  # another process wrote in between: only the file has it all
        tail.extend(rows)
        if len(tail) > 2 * _TAIL_EVENTS:
            del tail[: len(tail) - _TAIL_EVENTS]

    def _tail_after(self, after: int, limit: int) -> list[tuple[Any, ...]] | None:
        """Up to `limit` rows after `after` from the tail; [] when `after` is its end, None
        when the tail does not reach back to `after` or lies behind it (read the file)."""
        tail = self._tail
        if not tail or not tail[0][0] - 1 <= after <= tail[-1][0]:
            return None
        start = after - tail[0][0] + 1
        return tail[start : start + limit]

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

    def _write(
        self, batch: list[_Append]
    ) -> tuple[list[_Landed | EventgateError], list[tuple[Any, ...]]]:
        """One transaction for the whole batch (runs on the writer thread).

        Fast path: one INSERT for every append in the batch; new streams and streams whose
        versions the writer knows are not looked up. Only if that hits a constraint is the
        batch redone with every stream's version read (a stream taken meanwhile fails its
        append alone), and only if that hits one too (an event id used before), with a
        SAVEPOINT per append. Returns each append's outcome, and the rows committed.
        """
        connection = self._file.connection()
        for written in _PASSES:
            try:
                with write_transaction(connection):
                    outcomes, rows, versions = self._write_batch(connection, batch, written)
            except sqlite3.IntegrityError:
                if written == "isolated":
                    raise
                continue
            if len(self._known) > _KNOWN_STREAMS:
                self._known.clear()
            self._known.update(versions)  # committed: exact until another writer commits
            self._known_head = rows[-1][0] if rows else self._known_head
            return outcomes, rows
        raise AssertionError("unreachable: the isolated pass returns or raises")

    def _write_batch(
        self, connection: sqlite3.Connection, batch: list[_Append], written: str
    ) -> tuple[list[_Landed | EventgateError], list[tuple[Any, ...]], dict[str, int]]:
        """The outcomes, the rows inserted, and the versions of the batch's streams after it."""
        head = connection.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
        position: int = head[0]
        isolated = written == "isolated"
        if position != self._known_head:
            self._known.clear()  # another writer has committed since this one last did
            self._known_head = position
        versions = self._versions(connection, batch, trusting=written == "trusting")
        time = datetime.now(UTC)
        stamp = time.isoformat()
        outcomes: list[_Landed | EventgateError] = []
        rows: list[tuple[Any, ...]] = []
        for request in batch:
            version = versions.get(request.stream_id, 0)
            expected = request.expected_version
            if expected is not None and expected != version:
                outcomes.append(ConcurrencyError(request.stream_id, expected, version))
                continue
            request_rows = [
                (position + n, version + n, stamp, *row)
                for n, row in enumerate(request.rows, start=1)
            ]
            if isolated and not _insert_alone(connection, request_rows):
                outcomes.append(
                    DuplicateEvent(
                        f"append to {request.stream_id!r} rejected: an event id is already stored"
                    )
                )
                continue
            rows.extend(request_rows)
            outcomes.append(_Landed(version, position, time))
            versions[request.stream_id] = version + len(request_rows)
            position += len(request_rows)
        if not isolated:
            connection.executemany(_INSERT, rows)
        return outcomes, rows, versions

    def _versions(
        self, connection: sqlite3.Connection, batch: list[_Append], *, trusting: bool
    ) -> dict[str, int]:
        """The versions of the batch's streams: all read from the file, or (trusting) those
        the writer knows from its own commits, and the file read only for the others that
        some append expects to exist."""
        if not trusting:
            return _stream_versions(connection, {request.stream_id for request in batch})
        known = self._known
        versions = {r.stream_id: known[r.stream_id] for r in batch if r.stream_id in known}
        wanted = {r.stream_id for r in batch if r.expected_version != NO_STREAM}
        versions.update(_stream_versions(connection, wanted - versions.keys()))
        return versions

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

    async def read_command(self, command_id: str) -> list[RecordedEvent]:
        """The events the command `command_id` appended, in order (by an index)."""
        self._check_open()
        return await self._file.on_reader(
            self._select,
            f"SELECT {_COLUMNS} FROM events WHERE json_extract(metadata, '$.commandId') = ?"
            " ORDER BY position",
            (command_id,),
        )

    async def read_caused_by(
        self, event_ids: Sequence[str], limit: int = 100
    ) -> list[RecordedEvent]:
        """Up to `limit` events caused by one of `event_ids`, in position order."""
        self._check_open()
        if not event_ids:
            return []
        marks = ", ".join("?" * len(event_ids))
        return await self._file.on_reader(
            self._select,
            f"SELECT {_COLUMNS} FROM events WHERE json_extract(metadata, '$.causationId')"
            f" IN ({marks}) ORDER BY position LIMIT ?",
            (*event_ids, limit),
        )

    async def head(self) -> int:
        """The highest committed position, 0 when the store is empty."""
        self._check_open()
        return await self._file.on_reader(self._head)

    async def count_after(self, after: int) -> int:
        self._check_open()
        return await self._file.on_reader(self._count_after, after)

    async def subscribe(
        self, after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after `after`, forever; woken by appends here, polling for other processes."""
        async for scanned in self.subscribe_matching(keep_all, after, batch_size):
            yield scanned.events

    async def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]:
        """`subscribe`, decoding only what `keep(stream_id, type)` accepts: from the tail when
        it covers `after`, else from the file (filtered and decoded on a reader thread)."""
        from_file = False
        while True:
            signal = self._signal  # taken before reading, so no append's wake-up is missed
            self._check_open()
            rows = None if from_file else self._tail_after(after, batch_size)
            if rows is None:
                scanned = await self._file.on_reader(self._select_matching, keep, after, batch_size)
            else:
                scanned = self._scan(rows, keep) if rows else None
            if scanned is not None:
                after, from_file = scanned.position, False
                yield scanned
                continue
            try:  # not wait_for: on 3.11 it swallows a cancel racing the wake-up (gh-86296)
                async with asyncio.timeout(self._poll_interval):
                    await signal.wait()
                from_file = False
            except TimeoutError:  # nothing appended here for a while; another process may have
                from_file = True

    def _select_matching(
        self, keep: Callable[[str, str], bool], after: int, limit: int
    ) -> Scanned | None:
        sql = f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        rows = self._file.connection().execute(sql, (after, limit)).fetchall()
        return self._scan(rows, keep) if rows else None

    def _scan(self, rows: list[tuple[Any, ...]], keep: Callable[[str, str], bool]) -> Scanned:
        kept = [self._decode(row) for row in rows if keep(row[_STREAM], row[_TYPE])]
        return Scanned(kept, rows[-1][0])

    def _select(self, sql: str, parameters: tuple[Any, ...]) -> list[RecordedEvent]:
        rows = self._file.connection().execute(sql, parameters).fetchall()
        return [self._decode(row) for row in rows]

    def _head(self) -> int:
        row = self._file.connection().execute("SELECT COALESCE(MAX(position), 0) FROM events")
        head: int = row.fetchone()[0]
        return head

    def _count_after(self, after: int) -> int:
        sql = "SELECT COUNT(*) FROM events WHERE position > ?"
        count: int = self._file.connection().execute(sql, (after,)).fetchone()[0]
        return count

    def _decode(self, row: tuple[Any, ...]) -> RecordedEvent:
        position, version, time, event_id, stream_id, type_name, schema, data, metadata = row
        schema, payload = self._upcasters.upcast(type_name, schema, orjson.loads(data))
        moment = datetime.fromisoformat(time)
        return RecordedEvent(
            event_id, stream_id, version, position, type_name, schema, moment, payload,
            orjson.loads(metadata),
        )  # fmt: skip

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


def _stream_versions(connection: sqlite3.Connection, streams: set[str]) -> dict[str, int]:
    """The current version of each stream that has one, in few queries."""
    versions: dict[str, int] = {}
    for chunk, marks in in_chunks(streams):
        versions.update(
            connection.execute(
                "SELECT stream_id, MAX(stream_version) FROM events "
                f"WHERE stream_id IN ({marks}) GROUP BY stream_id",
                chunk,
            ).fetchall()
        )
    return versions


def _recorded(stream_id: str, events: Sequence[NewEvent], landed: _Landed) -> list[RecordedEvent]:
    version, position, time = landed.version, landed.position, landed.time
    return [  # positional: a third of the cost of keywords, once per event appended
        RecordedEvent(event.id, stream_id, version + n, position + n, event.type,
                      event.schema_version, time, event.data, event.metadata)
        for n, event in enumerate(events, start=1)
    ]  # fmt: skip


def _insert_alone(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> bool:
    """Insert one append's rows in a savepoint; False (and nothing kept) on a constraint."""
    connection.execute("SAVEPOINT append")
    try:
        connection.executemany(_INSERT, rows)
    except sqlite3.IntegrityError:
        connection.execute("ROLLBACK TO append")
        return False
    finally:
        connection.execute("RELEASE append")
    return True
