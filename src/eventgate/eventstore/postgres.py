"""The event store on PostgreSQL (asyncpg): concurrent writers, a gap-safe global order.

Why it is correct:
- Each append is one transaction. It reads the stream's version, checks the expected one,
  and inserts its events; `UNIQUE (stream_id, stream_version)` makes a racing writer fail
  (a `ConcurrencyError`, or a silent retry when no version was expected), never interleave.
  Writers of different streams never wait for each other: there is no global lock.
- The sequence-gap problem: a sequence hands out positions before commit, so with
  concurrent writers position 11 can become visible while 10 is still in flight, and a
  reader that moved past 11 would skip 10 forever. Here an event's position is its
  transaction id shifted left by 20 bits plus its index in the append:
  `(pg_current_xact_id() << 20) + n`. Readers of the global order take only events whose
  transaction id is below `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction
  still running: every transaction below it has ended, so no event can ever appear below
  what a reader has seen, and positions are read in (transaction, index) order. The
  position stays one opaque, increasing number (the consistency token, the checkpoints).
- A commit returns after PostgreSQL's WAL flush (`synchronous_commit` on): durable.
- Each append ends with `NOTIFY eventgate_events` (delivered at commit) to wake
  subscribers in every process; they also poll, so a lost notification costs latency only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from eventgate.errors import ConcurrencyError, DuplicateEvent, EventStoreError
from eventgate.eventstore.model import (
    NewEvent,
    RecordedEvent,
    Scanned,
    check_append,
    encode_json,
    keep_all,
)
from eventgate.eventstore.protocol import ANY_VERSION
from eventgate.eventstore.upcasting import Upcasters
from eventgate.metrics.families import record_commit
from eventgate.pgschema import open_pool

__all__ = ["PostgresEventStore"]

SCHEMA_VERSION = 1
"""The version of these tables; `eventgate_schema` records it (eventgate/pgschema.py)."""

CHANNEL = "eventgate_events"
INDEX_BITS = 20
"""Events one append may hold: 2^20. The rest of a position is the transaction id."""
_RETRIES = 50

SCHEMA = """
CREATE TABLE IF NOT EXISTS eventgate_events (
    position       bigint  PRIMARY KEY,
    event_id       text    NOT NULL UNIQUE,
    stream_id      text    NOT NULL,
    stream_version integer NOT NULL CHECK (stream_version > 0),
    type           text    NOT NULL,
    schema_version integer NOT NULL,
    time           timestamptz NOT NULL,
    data           json    NOT NULL,
    metadata       json    NOT NULL,
    CONSTRAINT eventgate_events_stream_version UNIQUE (stream_id, stream_version)
);
CREATE INDEX IF NOT EXISTS eventgate_events_by_command ON eventgate_events
    ((metadata ->> 'commandId'));
CREATE INDEX IF NOT EXISTS eventgate_events_by_cause ON eventgate_events
    ((metadata ->> 'causationId'));
CREATE OR REPLACE FUNCTION eventgate_append(
    p_streams text[], p_expected integer[], p_sizes integer[], p_time timestamptz,
    p_ids text[], p_types text[], p_schemas integer[], p_data text[], p_metadata text[]
) RETURNS TABLE (outcome text, version integer, first_position bigint) AS $$
-- Versions are read before the transaction id is taken (see eventgate_append_fast).
DECLARE
    tx bigint;
    known jsonb;
    base integer := 0;   -- events of this transaction so far: the index part of positions
    first integer := 1;  -- where the i-th append's events start in the flat arrays
    v integer;
    violated text;
BEGIN
    SELECT COALESCE(jsonb_object_agg(stream_id, top), '{}'::jsonb) INTO known
        FROM (SELECT stream_id, MAX(stream_version) AS top FROM eventgate_events
              WHERE stream_id = ANY(p_streams) GROUP BY stream_id) AS current;
    tx := pg_current_xact_id()::text::bigint << 20;
    FOR i IN 1 .. COALESCE(array_length(p_streams, 1), 0) LOOP
        v := COALESCE((known ->> p_streams[i])::integer, 0);
        IF p_expected[i] IS NOT NULL AND v <> p_expected[i] THEN
            RETURN QUERY SELECT 'conflict'::text, v, NULL::bigint;
        ELSE
            BEGIN  -- a subtransaction: a failed append leaves its neighbours standing
                INSERT INTO eventgate_events (position, event_id, stream_id, stream_version,
                                              type, schema_version, time, data, metadata)
                SELECT tx + base + g - 1, p_ids[first + g - 1], p_streams[i], v + g,
                       p_types[first + g - 1], p_schemas[first + g - 1], p_time,
                       p_data[first + g - 1]::json, p_metadata[first + g - 1]::json
                FROM generate_series(1, p_sizes[i]) AS g;
                RETURN QUERY SELECT 'ok'::text, v, tx + base;
                base := base + p_sizes[i];
                known := jsonb_set(known, ARRAY[p_streams[i]], to_jsonb(v + p_sizes[i]));
            EXCEPTION WHEN unique_violation THEN
                GET STACKED DIAGNOSTICS violated = CONSTRAINT_NAME;
                RETURN QUERY SELECT CASE WHEN violated = 'eventgate_events_stream_version'
                                         THEN 'race' ELSE 'duplicate' END, v, NULL::bigint;
            END;
        END IF;
        first := first + p_sizes[i];
    END LOOP;
    PERFORM pg_notify('eventgate_events', '');
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION eventgate_append_fast(
    p_streams text[], p_expected integer[], p_sizes integer[], p_time timestamptz,
    p_ids text[], p_types text[], p_schemas integer[], p_data text[], p_metadata text[],
    p_distinct boolean
) RETURNS TABLE (outcome text, version integer, first_position bigint) AS $$
-- eventgate_append without a subtransaction per append: versions of all the streams in one
-- query, every event in one INSERT. A unique violation (a race on a version, a duplicate id)
-- fails the whole call; the caller then runs the batch again through eventgate_append.
--
-- The transaction id (the positions) is taken only after the versions are read: a stream's
-- next version is then always in a transaction whose id is above that of the version it
-- follows (that one had committed, so had its id, before the read), so positions never
-- disagree with versions in one stream.
DECLARE
    tx bigint;
    known jsonb;
    base integer := 0;
    first integer := 1;
    v integer;
    outcomes text[] := '{}';
    versions integer[] := '{}';
    firsts bigint[] := '{}';
    e_position bigint[] := '{}';
    e_index integer[] := '{}';
    e_stream text[] := '{}';
    e_version integer[] := '{}';
BEGIN
    SELECT COALESCE(jsonb_object_agg(stream_id, top), '{}'::jsonb) INTO known
        FROM (SELECT stream_id, MAX(stream_version) AS top FROM eventgate_events
              WHERE stream_id = ANY(p_streams) GROUP BY stream_id) AS current;
    tx := pg_current_xact_id()::text::bigint << 20;
    FOR i IN 1 .. COALESCE(array_length(p_streams, 1), 0) LOOP
        v := COALESCE((known ->> p_streams[i])::integer, 0);
        IF p_expected[i] IS NOT NULL AND v <> p_expected[i] THEN
            outcomes := outcomes || 'conflict'::text;
            versions := versions || v;
            firsts := firsts || NULL::bigint;
        ELSE
            FOR g IN 1 .. p_sizes[i] LOOP
                e_position := e_position || (tx + base + g - 1);
                e_index := e_index || (first + g - 1);
                e_stream := e_stream || p_streams[i];
                e_version := e_version || (v + g);
            END LOOP;
            outcomes := outcomes || 'ok'::text;
            versions := versions || v;
            firsts := firsts || (tx + base);
            base := base + p_sizes[i];
            IF NOT p_distinct THEN  -- a later append to the same stream goes on from here
                known := jsonb_set(known, ARRAY[p_streams[i]], to_jsonb(v + p_sizes[i]));
            END IF;
        END IF;
        first := first + p_sizes[i];
    END LOOP;
    INSERT INTO eventgate_events (position, event_id, stream_id, stream_version,
                                  type, schema_version, time, data, metadata)
    SELECT e.position, p_ids[e.index], e.stream, e.version, p_types[e.index],
           p_schemas[e.index], p_time, p_data[e.index]::json, p_metadata[e.index]::json
    FROM unnest(e_position, e_index, e_stream, e_version) AS e(position, index, stream, version);
    PERFORM pg_notify('eventgate_events', '');
    RETURN QUERY SELECT * FROM unnest(outcomes, versions, firsts);
END $$ LANGUAGE plpgsql;
"""
_VISIBLE = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {INDEX_BITS})"
_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, time, data, metadata"
)
APPEND = (
    "SELECT outcome, version, first_position"
    " FROM eventgate_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
APPEND_FAST = (
    "SELECT outcome, version, first_position"
    " FROM eventgate_append_fast($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
"""Appends in one call: streams, expected versions, sizes, time, then the events' columns
(ids, types, schema versions, data, metadata) flat, in append order. One row per append."""
_BATCH_EVENTS = 1000
_FLUSHERS = 4
_DEADLOCK_RETRIES = 3


@dataclass(eq=False)
class _Pending:
    """One append waiting for a group commit."""

    stream_id: str
    events: Sequence[NewEvent]
    columns: tuple[list[Any], ...]
    expected: int | None
    future: asyncio.Future[list[RecordedEvent]]
    races: int = 0


class PostgresEventStore:
    """`EventStore` on PostgreSQL; open it with `await PostgresEventStore.open(dsn)`."""

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, upcasters: Upcasters, poll_interval: float
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._upcasters = upcasters
        self._poll_interval = poll_interval
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Lock()
        self._woken: set[asyncio.Event] = set()
        self._queue: deque[_Pending] = deque()
        self._flushers: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> PostgresEventStore:
        """Connect (a pool of up to 20) and create the table when absent."""
        pool = await open_pool(dsn, 20, "events", SCHEMA_VERSION, SCHEMA)
        return cls(pool, dsn, upcasters or Upcasters(), poll_interval)

    # -- appending --------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | None = ANY_VERSION,
    ) -> list[RecordedEvent]:
        """Append `events` to `stream_id`; durable on return. Appends that arrive together
        share a transaction (group commit), each in its own subtransaction."""
        self._check_open()
        check_append(stream_id, events, expected_version)
        if not events:
            return []
        if len(events) >= 2**INDEX_BITS:
            raise EventStoreError(f"one append holds at most {2**INDEX_BITS - 1} events")
        future: asyncio.Future[list[RecordedEvent]] = asyncio.get_running_loop().create_future()
        pending = _Pending(stream_id, events, _columns(events), expected_version, future)
        self._queue.append(pending)
        self._kick()
        return await future

    def _kick(self) -> None:
        """Start another flusher while appends wait and fewer than _FLUSHERS run."""
        self._flushers = {task for task in self._flushers if not task.done()}
        if self._queue and len(self._flushers) < _FLUSHERS:
            # its own context: not the request's that happened to start it (logs, traces)
            self._flushers.add(asyncio.create_task(self._flush(), context=contextvars.Context()))

    async def _flush(self) -> None:
        while self._queue:
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].events) <= _BATCH_EVENTS):
                batch.append(self._queue.popleft())
                size += len(batch[-1].events)
            try:
                outcomes = await self._write(batch)
            except Exception as e:  # the transaction failed: every append of it did
                failure = EventStoreError(f"appending to PostgreSQL failed: {e}")
                failure.__cause__ = e  # an unreachable database answers 503, not 500
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(failure)
                continue
            ok = [p for p, (kind, *_) in zip(batch, outcomes, strict=True) if kind == "ok"]
            record_commit("postgresql", len(ok), sum(len(p.events) for p in ok))
            for pending, outcome in zip(batch, outcomes, strict=True):
                await self._settle(pending, outcome)

    async def _write(self, batch: list[_Pending]) -> list[tuple[str, int, int | None, datetime]]:
        """One statement, so one transaction and one round trip: `eventgate_append_fast`
        checks every append, inserts the events in one INSERT and notifies. Should
        a unique constraint fail it (a race on a version, a duplicate event id), the batch
        runs again through `eventgate_append`: each append in its own subtransaction, so
        only the offending one fails."""
        batch.sort(key=lambda p: p.stream_id)  # first: one lock order for every writer (stable)
        time = datetime.now(UTC)
        flat: tuple[list[Any], ...] = ([], [], [], [], [])
        for pending in batch:
            for column, values in zip(flat, pending.columns, strict=True):
                column.extend(values)
        streams = [p.stream_id for p in batch]
        arguments = (streams, [p.expected for p in batch], [len(p.events) for p in batch],
                     time, *flat)  # fmt: skip
        distinct = len(set(streams)) == len(streams)
        async with self._pool.acquire() as connection:  # one statement: its own transaction
            for attempt in range(_DEADLOCK_RETRIES + 1):
                try:
                    rows = await connection.fetch(APPEND_FAST, *arguments, distinct)
                    break
                except asyncpg.UniqueViolationError:
                    rows = await connection.fetch(APPEND, *arguments)
                    break
                except asyncpg.DeadlockDetectedError:  # rolled back whole: safe to run again
                    if attempt == _DEADLOCK_RETRIES:
                        raise
        if len(rows) != len(batch):
            raise EventStoreError(f"eventgate_append answered {len(rows)} of {len(batch)}")
        return [(r["outcome"], r["version"], r["first_position"], time) for r in rows]

    async def _settle(
        self, pending: _Pending, outcome: tuple[str, int, int | None, datetime]
    ) -> None:
        kind, version, first, time = outcome
        if pending.future.done():
            return
        if kind == "ok" and first is not None:
            pending.future.set_result(_recorded(pending, version, first, time))
        elif kind == "duplicate":
            pending.future.set_exception(
                DuplicateEvent(f"an event id of this append to {pending.stream_id!r} is stored")
            )
        elif kind == "race" and pending.expected is None and pending.races < _RETRIES:
            pending.races += 1  # another writer took the version: append after it
            self._queue.append(pending)
            self._kick()
        else:
            actual = version if kind == "conflict" else await self._version(pending.stream_id)
            expected = pending.expected if pending.expected is not None else version
            pending.future.set_exception(ConcurrencyError(pending.stream_id, expected, actual))

    async def import_events(self, events: Sequence[RecordedEvent]) -> int:
        """Store events exactly as they were recorded elsewhere (ids, positions, versions,
        times, metadata), skipping any already here; returns how many were new. For
        `eventgate copy`: run it while nothing else appends."""
        self._check_open()
        rows = [
            (e.position, e.id, e.stream_id, e.stream_version, e.type, e.schema_version,
             e.time, encode_json(e.data), encode_json(e.metadata))
            for e in events
        ]  # fmt: skip
        async with self._pool.acquire() as connection, connection.transaction():
            before = await connection.fetchval("SELECT COUNT(*) FROM eventgate_events")
            try:
                await connection.executemany(
                    f"INSERT INTO eventgate_events ({_COLUMNS}) VALUES"
                    " ($1, $2, $3, $4, $5, $6, $7, $8::json, $9::json)"
                    " ON CONFLICT (event_id) DO NOTHING",
                    rows,
                )
            except asyncpg.UniqueViolationError as e:
                raise EventStoreError(
                    "the database holds other events at these positions or stream versions:"
                    " copy into an empty database"
                ) from e
            after = await connection.fetchval("SELECT COUNT(*) FROM eventgate_events")
            await connection.execute(f"NOTIFY {CHANNEL}")
        return int(after - before)

    async def _version(self, stream_id: str) -> int:
        async with self._pool.acquire() as connection:
            return await _stream_version(connection, stream_id)

    # -- reading ----------------------------------------------------------------------

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        """The committed events of `stream_id` with version >= `from_version`, oldest first."""
        return await self._select(
            f"SELECT {_COLUMNS} FROM eventgate_events WHERE stream_id = $1"
            " AND stream_version >= $2 ORDER BY stream_version",
            stream_id,
            from_version,
        )

    async def read_command(self, command_id: str) -> list[RecordedEvent]:
        """The committed events the command `command_id` appended, in order (by an index)."""
        return await self._select(
            f"SELECT {_COLUMNS} FROM eventgate_events WHERE metadata ->> 'commandId' = $1"
            " ORDER BY position",
            command_id,
        )

    async def read_caused_by(
        self, event_ids: Sequence[str], limit: int = 100
    ) -> list[RecordedEvent]:
        """Up to `limit` committed events caused by one of `event_ids`, in position order."""
        return await self._select(
            f"SELECT {_COLUMNS} FROM eventgate_events"
            " WHERE metadata ->> 'causationId' = ANY($1::text[]) ORDER BY position LIMIT $2",
            list(event_ids),
            limit,
        )

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to `limit` events after `after` whose transactions have all ended."""
        return await self._select(
            f"SELECT {_COLUMNS} FROM eventgate_events WHERE position > $1"
            f" AND position < {_VISIBLE} ORDER BY position LIMIT $2",
            after,
            limit,
        )

    async def head(self) -> int:
        """The highest position a reader of the global order can see (0 when empty)."""
        self._check_open()
        async with self._pool.acquire() as connection:
            head = await connection.fetchval(
                f"SELECT COALESCE(MAX(position), 0) FROM eventgate_events"
                f" WHERE position < {_VISIBLE}"
            )
        return int(head)

    async def count_after(self, after: int) -> int:
        self._check_open()
        async with self._pool.acquire() as connection:
            count = await connection.fetchval(
                "SELECT COUNT(*) FROM eventgate_events WHERE position > $1"
                f" AND position < {_VISIBLE}",
                after,
            )
        return int(count)

    async def subscribe(
        self, after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after `after`, forever: woken by NOTIFY from any process, else polling."""
        async for scanned in self.subscribe_matching(keep_all, after, batch_size):
            yield scanned.events

    async def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]:
        """`subscribe`, decoding only what `keep(stream_id, type)` accepts."""
        woken = asyncio.Event()
        self._woken.add(woken)
        try:
            await self._listen()
            while True:
                woken.clear()  # before reading, so no wake-up after the read is missed
                scanned = await self._select_matching(keep, after, batch_size)
                if scanned is not None:
                    after = scanned.position
                    yield scanned
                    continue
                try:  # not wait_for: on 3.11 it swallows a cancel racing the wake-up (gh-86296)
                    async with asyncio.timeout(self._poll_interval):
                        await woken.wait()
                except TimeoutError:
                    if self._listener is None or self._listener.is_closed():
                        await self._listen()
        finally:
            self._woken.discard(woken)

    async def _select_matching(
        self, keep: Callable[[str, str], bool], after: int, limit: int
    ) -> Scanned | None:
        self._check_open()
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {_COLUMNS} FROM eventgate_events WHERE position > $1"
                f" AND position < {_VISIBLE} ORDER BY position LIMIT $2",
                after,
                limit,
            )
        if not rows:
            return None
        events = [self._decode(row) for row in rows if keep(row["stream_id"], row["type"])]
        return Scanned(events, rows[-1]["position"])

    async def _listen(self) -> None:
        """One LISTEN connection per store, made by the first subscriber that finds none
        (the others wait for it); when it is lost, subscribers poll, and the next one to
        time out connects it again."""
        async with self._listening:
            if self._listener is not None and not self._listener.is_closed():
                return
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                listener = await asyncpg.connect(self._dsn)
                try:
                    await listener.add_listener(CHANNEL, self._notified)
                except BaseException:
                    await listener.close()
                    raise
                self._listener = listener

    def _notified(self, *_: object) -> None:
        for woken in self._woken:
            woken.set()

    async def _select(self, sql: str, *parameters: Any) -> list[RecordedEvent]:
        self._check_open()
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(sql, *parameters)
        return [self._decode(row) for row in rows]

    def _decode(self, row: asyncpg.Record) -> RecordedEvent:
        schema, payload = self._upcasters.upcast(
            row["type"], row["schema_version"], orjson.loads(row["data"])
        )
        return RecordedEvent(
            id=row["event_id"],
            stream_id=row["stream_id"],
            stream_version=row["stream_version"],
            position=row["position"],
            type=row["type"],
            schema_version=schema,
            time=row["time"],
            data=payload,
            metadata=orjson.loads(row["metadata"]),
        )

    # -- plumbing ---------------------------------------------------------------------

    async def close(self) -> None:
        """Close the listener and the pool (appends in flight finish first)."""
        if self._closed:
            return
        self._closed = True
        while self._flushers:  # appends already queued are written first
            await asyncio.gather(*self._flushers, return_exceptions=True)
            self._flushers = {task for task in self._flushers if not task.done()}
        if self._listener is not None:
            await self._listener.close()
        await self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreError("the event store is closed")


async def _stream_version(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, stream_id: str
) -> int:
    version = await connection.fetchval(
        "SELECT MAX(stream_version) FROM eventgate_events WHERE stream_id = $1", stream_id
    )
    return int(version or 0)


def _recorded(pending: _Pending, version: int, first: int, time: datetime) -> list[RecordedEvent]:
    return [
        RecordedEvent(
            id=event.id,
            stream_id=pending.stream_id,
            stream_version=version + n,
            position=first + n - 1,
            type=event.type,
            schema_version=event.schema_version,
            time=time,
            data=event.data,
            metadata=event.metadata,
        )
        for n, event in enumerate(pending.events, start=1)
    ]


def _columns(events: Sequence[NewEvent]) -> tuple[list[Any], ...]:
    return (
        [e.id for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [encode_json(e.data) for e in events],
        [encode_json(e.metadata) for e in events],
    )
