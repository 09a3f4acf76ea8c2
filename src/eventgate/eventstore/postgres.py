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
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from eventgate.errors import ConcurrencyError, DuplicateEvent, EventStoreError
from eventgate.eventstore.model import NewEvent, RecordedEvent, check_append, encode_json
from eventgate.eventstore.protocol import ANY_VERSION
from eventgate.eventstore.upcasting import Upcasters

__all__ = ["PostgresEventStore"]

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
"""
_VISIBLE = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {INDEX_BITS})"
_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, time, data, metadata"
)
_INSERT = f"""
INSERT INTO eventgate_events ({_COLUMNS})
SELECT (pg_current_xact_id()::text::bigint << {INDEX_BITS}) + n - 1, event_id, $1, $2 + n, type,
       schema_version, $3, data::json, metadata::json
FROM unnest($4::text[], $5::text[], $6::integer[], $7::text[], $8::text[])
     WITH ORDINALITY AS e(event_id, type, schema_version, data, metadata, n)
RETURNING position
"""


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
        self._woken: set[asyncio.Event] = set()
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, upcasters: Upcasters | None = None, poll_interval: float = 0.25
    ) -> PostgresEventStore:
        """Connect (a pool of up to 20) and create the table when absent."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=20)
        except (OSError, asyncpg.PostgresError) as e:
            raise EventStoreError(f"cannot connect to PostgreSQL: {e}") from e
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(7041772)")
                await connection.execute(SCHEMA)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, dsn, upcasters or Upcasters(), poll_interval)

    # -- appending --------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | None = ANY_VERSION,
    ) -> list[RecordedEvent]:
        """Append `events` to `stream_id` in one transaction; durable on return."""
        self._check_open()
        check_append(stream_id, events, expected_version)
        if not events:
            return []
        if len(events) >= 2**INDEX_BITS:
            raise EventStoreError(f"one append holds at most {2**INDEX_BITS - 1} events")
        columns = _columns(events)
        for _ in range(_RETRIES):
            try:
                return await self._append_once(stream_id, events, columns, expected_version)
            except asyncpg.UniqueViolationError as e:
                if e.constraint_name != "eventgate_events_stream_version":
                    raise DuplicateEvent(f"an event id of this append is stored: {e}") from e
                if expected_version is not None:
                    actual = await self._version(stream_id)
                    raise ConcurrencyError(stream_id, expected_version, actual) from e
        raise EventStoreError(f"stream {stream_id!r}: too many concurrent appends")

    async def _append_once(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        columns: tuple[list[Any], ...],
        expected: int | None,
    ) -> list[RecordedEvent]:
        time = datetime.now(UTC)
        async with self._pool.acquire() as connection, connection.transaction():
            version = await _stream_version(connection, stream_id)
            if expected is not None and expected != version:
                raise ConcurrencyError(stream_id, expected, version)
            rows = await connection.fetch(_INSERT, stream_id, version, time, *columns)
            await connection.execute(f"NOTIFY {CHANNEL}")
        return [
            RecordedEvent(
                id=event.id,
                stream_id=stream_id,
                stream_version=version + n,
                position=row["position"],
                type=event.type,
                schema_version=event.schema_version,
                time=time,
                data=event.data,
                metadata=event.metadata,
            )
            for n, (event, row) in enumerate(zip(events, rows, strict=True), start=1)
        ]

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

    async def subscribe(
        self, after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches after `after`, forever: woken by NOTIFY from any process, else polling."""
        woken = asyncio.Event()
        self._woken.add(woken)
        try:
            await self._listen()
            while True:
                woken.clear()  # before reading, so no wake-up after the read is missed
                batch = await self.read_all(after, batch_size)
                if batch:
                    after = batch[-1].position
                    yield batch
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self._poll_interval)
        finally:
            self._woken.discard(woken)

    async def _listen(self) -> None:
        """One LISTEN connection per store; when it is lost, subscribers poll until the
        next subscribe call connects it again."""
        if self._listener is not None and not self._listener.is_closed():
            return
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            listener = await asyncpg.connect(self._dsn)
            await listener.add_listener(CHANNEL, self._notified)
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


def _columns(events: Sequence[NewEvent]) -> tuple[list[Any], ...]:
    return (
        [e.id for e in events],
        [e.type for e in events],
        [e.schema_version for e in events],
        [encode_json(e.data) for e in events],
        [encode_json(e.metadata) for e in events],
    )
