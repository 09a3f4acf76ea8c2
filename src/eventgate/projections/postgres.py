"""Read models on PostgreSQL (asyncpg): the same rules as the SQLite read store.

Each delivery is applied in one transaction that first locks the projection's checkpoint
row (`SELECT ... FOR UPDATE`) and checks it is where the delivery starts, then writes the
folded rows, the parked events and the new checkpoint. So two processes running the same
projection can never both apply a batch (the second waits for the lock, then sees the
checkpoint moved: StaleCheckpoint), and a crash loses or doubles nothing. Folding and
parking decisions are projections/folding.py's, shared with SQLite.

Every transaction that changes a read model also sends a notification on `CHANNEL`
(`pg_notify`, delivered when it commits and only if it does): the view, the position it
reached, the changed keys (or none: every row) and whether its parked streams changed.
Query services in other processes follow it (projections/watcher.py) to empty their caches,
learn the parked streams and wake their consistency waits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from eventgate.errors import ProjectionError, StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent
from eventgate.hub.hub import Delivery
from eventgate.pgschema import connect_pool, ensure_schema
from eventgate.projections.changes import RecordChanged
from eventgate.projections.folding import fold, replay_parked
from eventgate.projections.parking import RETRY, ParkedStream
from eventgate.projections.projection import Projection, Row
from eventgate.projections.protocol import KnownProjections

__all__ = ["CHANNEL", "PostgresReadStore", "ReadModelNotice"]

CHANNEL = "eventgate_read_models"
_MAX_NOTICE = 7900
"""Bytes a notification's payload has at most (PostgreSQL's limit is 8000); past it, the
notification names no keys: every row may have changed."""

SCHEMA_VERSION = 2
"""The version of these tables (2: checkpoints count changes); `eventgate_schema` records
it (eventgate/pgschema.py)."""

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
_TYPES = {str: "text", int: "bigint", bool: "boolean", float: "double precision"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventgate_projection_checkpoints (
    name     text PRIMARY KEY,
    position bigint NOT NULL CHECK (position >= 0),
    changes  bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS eventgate_projection_parked (
    projection text NOT NULL,
    stream_id  text NOT NULL,
    position   bigint NOT NULL,
    event_type text NOT NULL,
    error      text,
    parked_at  text NOT NULL,
    request    text CHECK (request IN ('retry', 'skip')),
    PRIMARY KEY (projection, position)
);
CREATE INDEX IF NOT EXISTS eventgate_projection_parked__stream
    ON eventgate_projection_parked (projection, stream_id, position);
"""


@dataclass(frozen=True)
class ReadModelNotice:
    """What one committed read-model transaction changed, as its notification says."""

    view: str
    position: int
    changes: int  # the view's change counter after this transaction: a gap means a miss
    keys: list[str] | None  # None: any row may have changed
    parked: bool  # the view's parked streams changed

    def payload(self) -> str:
        body = {"view": self.view, "position": self.position, "changes": self.changes,
                "keys": self.keys, "parked": self.parked}  # fmt: skip
        encoded = orjson.dumps(body)
        if len(encoded) > _MAX_NOTICE:  # bytes, as PostgreSQL counts them
            encoded = orjson.dumps({**body, "keys": None})
        return encoded.decode()

    @classmethod
    def parse(cls, payload: str) -> ReadModelNotice:
        body = orjson.loads(payload)
        return cls(body["view"], body["position"], body["changes"], body["keys"], body["parked"])


async def _notify(connection: Connection, notice: ReadModelNotice) -> None:
    await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, notice.payload())


def _table(projection: Projection) -> str:
    return f"rm_{projection.name}"


def _table_sql(projection: Projection) -> list[str]:
    columns = ", ".join(
        f"{name} {_TYPES[kind]}" + (" PRIMARY KEY" if name == projection.key else "")
        for name, kind in projection.columns.items()
    )
    table = _table(projection)
    statements = [f"CREATE TABLE IF NOT EXISTS {table} ({columns}, _position bigint NOT NULL)"]
    for index in projection.indexes:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {table}__{'_'.join(index)} ON {table} ({', '.join(index)})"
        )
    return statements


def _numbered(sql: str) -> str:
    """`?` placeholders (the callers' constant SQL) as PostgreSQL's `$1, $2, ...`."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], start=1)) + parts[-1]


class PostgresReadStore(KnownProjections):
    """`ReadStore` on PostgreSQL; open it with `await PostgresReadStore.open(dsn, projections)`."""

    def __init__(self, pool: asyncpg.Pool, projections: Iterable[Projection]) -> None:
        super().__init__(projections)
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, projections: Iterable[Projection]) -> PostgresReadStore:
        """Connect and create (or rebuild, when a projection's columns changed) the tables."""
        pool = await connect_pool(dsn, 10, ProjectionError)
        store = cls(pool, projections)
        try:
            await store._create_schema()
            for parked in await store.parked_streams():
                store._parked.setdefault(parked.projection, set()).add(parked.stream_id)
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    # -- checkpoints and writing ------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int:
        async with self._pool.acquire() as connection:
            return await _checkpoint(connection, name)

    async def save_checkpoint(self, name: str, position: int) -> None:
        raise ProjectionError("projection checkpoints move only with their changes (apply)")

    async def marks(self) -> dict[str, tuple[int, int]]:
        """Each read model's (checkpoint, number of changes committed so far)."""
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT name, position, changes FROM eventgate_projection_checkpoints"
            )
        return {row["name"]: (row["position"], row["changes"]) for row in rows}

    async def apply(self, projection: Projection, delivery: Delivery) -> list[RecordChanged]:
        """Apply `delivery` and move the checkpoint in one transaction (compare-and-set)."""
        [changes] = await self.apply_all([(projection, delivery)])
        return changes

    async def apply_all(
        self, deliveries: Sequence[tuple[Projection, Delivery]]
    ) -> list[list[RecordChanged]]:
        """Apply each projection's delivery in one transaction, all or nothing. Checkpoint
        rows are locked in name order, so two processes never wait on each other in a cycle."""
        order = sorted(range(len(deliveries)), key=lambda n: deliveries[n][0].name)
        applied: dict[int, tuple[list[RecordChanged], set[str], set[str]]] = {}
        async with self._pool.acquire() as connection, connection.transaction():
            for n in order:
                applied[n] = await self._apply(connection, *deliveries[n])
        # this process's copy of the parked streams changes only once the transaction holds
        for n, (projection, _) in enumerate(deliveries):
            _, keys, parked = applied[n]
            known = self._parked[projection.name]
            known.difference_update(keys)
            known.update(parked)
        return [applied[n][0] for n in range(len(deliveries))]

    async def _apply(
        self, connection: Connection, projection: Projection, delivery: Delivery
    ) -> tuple[list[RecordChanged], set[str], set[str]]:
        """One delivery inside the caller's transaction: its changes, the streams it
        touched and those of them now parked."""
        checkpoint = await _locked_checkpoint(connection, projection.name)
        if checkpoint != delivery.after:
            raise StaleCheckpoint(
                f"projection {projection.name} is at {checkpoint}, not {delivery.after}"
            )
        keys = {event.stream_id for event in delivery.events}
        # the table decides, not this process's copy: another process may have parked
        # or unparked these streams (a lease moved, an operator's retry)
        parked = await _parked_among(connection, projection.name, keys)
        stored = await self._get_many(connection, projection, keys)
        folded = fold(projection, delivery.events, stored, parked)
        await self._upsert(connection, projection, folded.changed.values())
        for event, error in folded.parked:
            await _park(connection, projection.name, event, error)
        changes = await connection.fetchval(
            "UPDATE eventgate_projection_checkpoints SET position = $2, changes = changes + 1"
            " WHERE name = $1 RETURNING changes",
            projection.name,
            delivery.position,
        )
        changed = list(folded.changed)
        notice = ReadModelNotice(
            projection.name, delivery.position, changes, changed, bool(folded.parked)
        )
        await _notify(connection, notice)
        name = projection.name
        recorded = [
            RecordChanged(name, key, row["_position"]) for key, row in folded.changed.items()
        ]
        return recorded, keys, parked

    async def reset(self, projection: Projection) -> None:
        """Recreate the read model empty, its checkpoint 0 and nothing parked, atomically."""
        async with self._pool.acquire() as connection, connection.transaction():
            await _locked_checkpoint(connection, projection.name)
            await connection.execute(f"DROP TABLE IF EXISTS {_table(projection)}")
            for statement in _table_sql(projection):
                await connection.execute(statement)
            changes = await connection.fetchval(
                "UPDATE eventgate_projection_checkpoints SET position = 0, changes = changes + 1"
                " WHERE name = $1 RETURNING changes",
                projection.name,
            )
            await connection.execute(
                "DELETE FROM eventgate_projection_parked WHERE projection = $1", projection.name
            )
            await _notify(connection, ReadModelNotice(projection.name, 0, changes, None, True))
        self._parked[projection.name] = set()

    async def _upsert(
        self, connection: Connection, projection: Projection, rows: Iterable[Row]
    ) -> None:
        columns = [*projection.columns, "_position"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != projection.key)
        marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        sql = (
            f"INSERT INTO {_table(projection)} ({', '.join(columns)}) VALUES ({marks})"
            f" ON CONFLICT ({projection.key}) DO UPDATE SET {updates}"
        )
        values = [tuple(row[c] for c in columns) for row in rows]
        if values:
            await connection.executemany(sql, values)

    # -- parked streams ---------------------------------------------------------------

    async def reload_parked(self, projection: str) -> None:
        self._parked[projection] = {p.stream_id for p in await self.parked_streams(projection)}

    async def parked_streams(self, projection: str | None = None) -> list[ParkedStream]:
        async with self._pool.acquire() as connection:
            return await _parked_streams(connection, projection)

    async def request(self, projection: str, stream_id: str | None, kind: str) -> int:
        self.projection(projection)
        async with self._pool.acquire() as connection, connection.transaction():
            return await _request(connection, projection, stream_id, kind)

    async def requested(self) -> list[ParkedStream]:
        return [p for p in await self.parked_streams() if p.request is not None]

    async def retry(
        self, projection: Projection, stream_id: str, events: list[RecordedEvent], skip: bool
    ) -> list[RecordChanged]:
        """Re-apply a parked stream's events in order (see SQLiteReadStore.retry)."""
        by_position = {event.position: event for event in events}
        async with self._pool.acquire() as connection, connection.transaction():
            checkpoint = await _locked_checkpoint(connection, projection.name)
            positions = await _parked_positions(connection, projection.name, stream_id)
            current = await self._get(connection, projection, stream_id)
            replayed = replay_parked(projection, current, positions, by_position, skip)
            if replayed.row is not None:
                await self._upsert(connection, projection, [replayed.row])
            await connection.executemany(
                "DELETE FROM eventgate_projection_parked WHERE projection = $1 AND position = $2",
                [(projection.name, position) for position in replayed.done],
            )
            if replayed.failed is not None:
                position, error = replayed.failed
                await connection.execute(
                    "UPDATE eventgate_projection_parked SET error = $3, request = NULL"
                    " WHERE projection = $1 AND position = $2",
                    projection.name, position, error,
                )  # fmt: skip
            left = await _parked_positions(connection, projection.name, stream_id)
            if left and replayed.failed is None:
                await _request(connection, projection.name, stream_id, RETRY)
            changes = await connection.fetchval(
                "UPDATE eventgate_projection_checkpoints SET changes = changes + 1"
                " WHERE name = $1 RETURNING changes",
                projection.name,
            )
            notice = ReadModelNotice(projection.name, checkpoint, changes, [stream_id], True)
            await _notify(connection, notice)
        if not left:
            self._parked[projection.name].discard(stream_id)
        row = replayed.row
        return [] if row is None else [RecordChanged(projection.name, stream_id, row["_position"])]

    # -- reading ----------------------------------------------------------------------

    async def get(self, projection: Projection, key: str) -> Row | None:
        async with self._pool.acquire() as connection:
            return await self._get(connection, projection, key)

    async def select(
        self,
        projection: Projection,
        where: str,
        parameters: tuple[Any, ...],
        order_by: str,
        limit: int,
    ) -> list[Row]:
        sql = _numbered(
            f"SELECT * FROM {_table(projection)} WHERE {where} ORDER BY {order_by} LIMIT ?"
        )
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(sql, *parameters, limit)
        return [dict(row) for row in rows]

    async def rows(self, projection: Projection) -> list[Row]:
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT * FROM {_table(projection)} ORDER BY {projection.key}"
            )
        return [dict(row) for row in rows]

    async def _get(self, connection: Connection, projection: Projection, key: str) -> Row | None:
        row = await connection.fetchrow(
            f"SELECT * FROM {_table(projection)} WHERE {projection.key} = $1", key
        )
        return None if row is None else dict(row)

    async def _get_many(
        self, connection: Connection, projection: Projection, keys: set[str]
    ) -> dict[str, Row]:
        rows = await connection.fetch(
            f"SELECT * FROM {_table(projection)} WHERE {projection.key} = ANY($1::text[])",
            list(keys),
        )
        return {row[projection.key]: dict(row) for row in rows}

    async def _create_schema(self) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await ensure_schema(connection, "read_models", SCHEMA_VERSION, _SCHEMA)
            found = await connection.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = 'eventgate_projection_checkpoints'"
                " AND column_name = 'changes'"
            )
            if not found:  # version 1 -> 2
                await connection.execute(
                    "ALTER TABLE eventgate_projection_checkpoints"
                    " ADD COLUMN changes bigint NOT NULL DEFAULT 0"
                )
            for projection in self.projections.values():
                for statement in _table_sql(projection):
                    await connection.execute(statement)
                found = await connection.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                    _table(projection),
                )
                if {r["column_name"] for r in found} != {*projection.columns, "_position"}:
                    await connection.execute(f"DROP TABLE {_table(projection)}")
                    for statement in _table_sql(projection):
                        await connection.execute(statement)
                    await connection.execute(
                        "DELETE FROM eventgate_projection_checkpoints WHERE name = $1",
                        projection.name,
                    )


async def _checkpoint(connection: Connection, name: str) -> int:
    position = await connection.fetchval(
        "SELECT position FROM eventgate_projection_checkpoints WHERE name = $1", name
    )
    return int(position or 0)


async def _locked_checkpoint(connection: Connection, name: str) -> int:
    """The checkpoint, its row locked until the transaction ends (created at 0 if absent)."""
    await connection.execute(
        "INSERT INTO eventgate_projection_checkpoints (name, position) VALUES ($1, 0)"
        " ON CONFLICT (name) DO NOTHING",
        name,
    )
    position = await connection.fetchval(
        "SELECT position FROM eventgate_projection_checkpoints WHERE name = $1 FOR UPDATE", name
    )
    return int(position)


async def _park(
    connection: Connection, projection: str, event: RecordedEvent, error: str | None
) -> None:
    await connection.execute(
        "INSERT INTO eventgate_projection_parked"
        " (projection, stream_id, position, event_type, error, parked_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        projection, event.stream_id, event.position, event.type, error,
        datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip


async def _parked_among(connection: Connection, projection: str, keys: set[str]) -> set[str]:
    """Which of the streams `keys` `projection` has parked, as the table says now."""
    rows = await connection.fetch(
        "SELECT DISTINCT stream_id FROM eventgate_projection_parked"
        " WHERE projection = $1 AND stream_id = ANY($2::text[])",
        projection,
        list(keys),
    )
    return {row["stream_id"] for row in rows}


async def _parked_positions(connection: Connection, projection: str, stream_id: str) -> list[int]:
    rows = await connection.fetch(
        "SELECT position FROM eventgate_projection_parked WHERE projection = $1"
        " AND stream_id = $2 ORDER BY position",
        projection,
        stream_id,
    )
    return [row["position"] for row in rows]


async def _parked_streams(connection: Connection, projection: str | None) -> list[ParkedStream]:
    rows = await connection.fetch(
        "SELECT DISTINCT ON (p.projection, p.stream_id) p.projection, p.stream_id, p.position,"
        " p.event_type, p.error, p.parked_at, p.request, count(*) OVER"
        " (PARTITION BY p.projection, p.stream_id) AS events"
        " FROM eventgate_projection_parked p WHERE $1::text IS NULL OR p.projection = $1"
        " ORDER BY p.projection, p.stream_id, p.position",
        projection,
    )
    found = [
        ParkedStream(r["projection"], r["stream_id"], r["position"], r["event_type"],
                     r["error"] or "", r["events"], r["parked_at"], r["request"])
        for r in rows
    ]  # fmt: skip
    return sorted(found, key=lambda p: (p.projection, p.position))


async def _request(
    connection: Connection, projection: str, stream_id: str | None, kind: str
) -> int:
    streams = [p.stream_id for p in await _parked_streams(connection, projection)]
    chosen = [s for s in streams if stream_id is None or s == stream_id]
    for stream in chosen:
        await connection.execute(
            "UPDATE eventgate_projection_parked SET request = $3 WHERE projection = $1"
            " AND position = (SELECT MIN(position) FROM eventgate_projection_parked"
            " WHERE projection = $1 AND stream_id = $2)",
            projection, stream, kind,
        )  # fmt: skip
    return len(chosen)
