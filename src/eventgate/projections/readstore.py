"""The query side's own storage on a SQLite file: one table per projection, plus checkpoints.

Each delivery is applied in one transaction that also moves the projection's checkpoint,
and only if the checkpoint still is where the delivery starts (compare-and-set). So a
crash can neither lose nor double-apply an event, and two runners of one projection
(a live one and a rebuild, say) can never both apply the same batch. An event the
projection cannot apply parks its stream in the same transaction (projections/parking.py):
the other streams flow on, and nothing of the parked stream is lost or applied out of order.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import eventgate.projections.parking as parking
from eventgate.errors import ProjectionError, StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent
from eventgate.hub.hub import Delivery
from eventgate.projections.changes import RecordChanged
from eventgate.projections.folding import fold, replay_parked
from eventgate.projections.parking import ParkedStream
from eventgate.projections.projection import COLUMN_TYPES, Projection, Row
from eventgate.projections.protocol import KnownProjections
from eventgate.sqlitefile import SQLiteFile, in_chunks, write_transaction

__all__ = ["SQLiteReadStore"]

_log = logging.getLogger(__name__)

_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL CHECK (position >= 0),
    changes  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""


def _table_sql(projection: Projection) -> list[str]:
    columns = ", ".join(
        f"{name} {COLUMN_TYPES[kind]}" + (" PRIMARY KEY" if name == projection.key else "")
        for name, kind in projection.columns.items()
    )
    statements = [
        f"CREATE TABLE IF NOT EXISTS {projection.name} ({columns}, _position INTEGER NOT NULL)"
    ]
    for index in projection.indexes:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {projection.name}__{'_'.join(index)} "
            f"ON {projection.name} ({', '.join(index)})"
        )
    return statements


class SQLiteReadStore(KnownProjections):
    """Read models of the given projections; also the `CheckpointStore` of their runners."""

    def __init__(self, path: Path, projections: Iterable[Projection]) -> None:
        super().__init__(projections)
        self.path = Path(path)
        # NORMAL, not FULL: a change and its checkpoint still commit atomically, so a power
        # loss can only take both back together, and they are replayed from the durable log.
        self._file = SQLiteFile(self.path, name="readstore", synchronous="NORMAL")

    @classmethod
    async def open(cls, path: Path, projections: Iterable[Projection]) -> SQLiteReadStore:
        """Open (creating tables as needed) the read store at `path`."""
        store = cls(path, projections)
        await store._file.on_writer(store._create_schema)
        for parked in await store.parked_streams():
            store._parked.setdefault(parked.projection, set()).add(parked.stream_id)
        return store

    async def close(self) -> None:
        await self._file.close()

    # -- CheckpointStore --------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int:
        return await self._file.on_reader(lambda: _checkpoint(self._file.connection(), name))

    async def save_checkpoint(self, name: str, position: int) -> None:
        raise ProjectionError("projection checkpoints move only with their changes (apply)")

    async def marks(self) -> dict[str, tuple[int, int]]:
        """Each read model's (checkpoint, number of changes committed so far)."""
        sql = "SELECT name, position, changes FROM projection_checkpoints"
        rows = await self._file.on_reader(lambda: self._file.connection().execute(sql).fetchall())
        return {name: (position, changes) for name, position, changes in rows}

    # -- writing ----------------------------------------------------------------------

    async def apply(self, projection: Projection, delivery: Delivery) -> list[RecordChanged]:
        """Apply `delivery` and move the checkpoint in one transaction."""
        [changes] = await self.apply_all([(projection, delivery)])
        return changes

    async def apply_all(
        self, deliveries: Sequence[tuple[Projection, Delivery]]
    ) -> list[list[RecordChanged]]:
        """Apply each projection's delivery and move its checkpoint, all in one transaction
        (all or nothing: StaleCheckpoint if any checkpoint is not where its delivery starts)."""
        return await self._file.on_writer(self._apply_all, deliveries)

    async def reset(self, projection: Projection) -> None:
        """Recreate the read model empty and set its checkpoint to 0, in one transaction."""
        await self._file.on_writer(self._reset, projection)

    def _apply_all(
        self, deliveries: Sequence[tuple[Projection, Delivery]]
    ) -> list[list[RecordChanged]]:
        connection = self._file.connection()
        with write_transaction(connection):
            applied = [self._apply(connection, p, delivery) for p, delivery in deliveries]
        # this process's copy of the parked streams changes only once the transaction holds
        for (projection, _), (_, keys, parked) in zip(deliveries, applied, strict=True):
            known = self._parked[projection.name]
            known.difference_update(keys)
            known.update(parked)
        return [changes for changes, _, _ in applied]

    def _apply(
        self, connection: sqlite3.Connection, projection: Projection, delivery: Delivery
    ) -> tuple[list[RecordChanged], set[str], set[str]]:
        """One delivery inside the caller's transaction: its changes, the streams it
        touched and those of them now parked."""
        checkpoint = _checkpoint(connection, projection.name)
        if checkpoint != delivery.after:
            raise StaleCheckpoint(
                f"projection {projection.name} is at {checkpoint}, not {delivery.after}"
            )
        keys = {event.stream_id for event in delivery.events}
        # the table decides, not this process's copy: another process may have parked
        # or unparked these streams (a lease moved, an operator's retry)
        parked = parking.parked_among(connection, projection.name, keys)
        stored = self._get_many(connection, projection, keys)
        folded = fold(projection, delivery.events, stored, parked)
        self._upsert(connection, projection, folded.changed.values())
        for event, error in folded.parked:
            parking.park(connection, projection.name, event, error)
        _set_checkpoint(connection, projection.name, delivery.position)
        name = projection.name
        changes = [
            RecordChanged(name, key, row["_position"]) for key, row in folded.changed.items()
        ]
        return changes, keys, parked

    def _upsert(
        self, connection: sqlite3.Connection, projection: Projection, rows: Iterable[Row]
    ) -> None:
        columns = [*projection.columns, "_position"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != projection.key)
        sql = (
            f"INSERT INTO {projection.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({projection.key}) DO UPDATE SET {updates}"
        )
        connection.executemany(sql, map(operator.itemgetter(*columns), rows))

    def _reset(self, projection: Projection) -> None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute(f"DROP TABLE IF EXISTS {projection.name}")
            for statement in _table_sql(projection):
                connection.execute(statement)
            _set_checkpoint(connection, projection.name, 0)
            connection.execute(
                "DELETE FROM projection_parked WHERE projection = ?", (projection.name,)
            )
        self._parked[projection.name] = set()

    # -- parked streams ---------------------------------------------------------------

    async def reload_parked(self, projection: str) -> None:
        """Read `projection`'s parked streams again (another process rebuilt it, say)."""
        found = await self.parked_streams(projection)
        self._parked[projection] = {p.stream_id for p in found}

    async def parked_streams(self, projection: str | None = None) -> list[ParkedStream]:
        """Every parked stream (of one projection, or of all) with its first parked event."""
        return await self._file.on_reader(
            lambda: parking.parked_streams(self._file.connection(), projection)
        )

    async def request(self, projection: str, stream_id: str | None, kind: str) -> int:
        """Ask for a retry or skip of a parked stream (or all of a projection's)."""
        self.projection(projection)
        return await self._file.on_writer(self._request, projection, stream_id, kind)

    async def requested(self) -> list[ParkedStream]:
        """The parked streams an operator asked to retry or skip."""
        return await self._file.on_reader(lambda: parking.requested(self._file.connection()))

    async def retry(
        self, projection: Projection, stream_id: str, events: list[RecordedEvent], skip: bool
    ) -> list[RecordChanged]:
        """Apply a parked stream's events (`events`: at least those parked) in order, the
        first one skipped if `skip`; unpark it when all went through, else keep the rest
        parked from the one that failed again."""
        return await self._file.on_writer(self._retry, projection, stream_id, events, skip)

    def _request(self, projection: str, stream_id: str | None, kind: str) -> int:
        connection = self._file.connection()
        with write_transaction(connection):
            return parking.request(connection, projection, stream_id, kind)

    def _retry(
        self, projection: Projection, stream_id: str, events: list[RecordedEvent], skip: bool
    ) -> list[RecordChanged]:
        connection = self._file.connection()
        by_position = {event.position: event for event in events}
        with write_transaction(connection):
            positions = parking.parked_positions(connection, projection.name, stream_id)
            current = self._get(connection, projection, stream_id)
            replayed = replay_parked(projection, current, positions, by_position, skip)
            if replayed.row is not None:
                self._upsert(connection, projection, [replayed.row])
            parking.unpark(connection, projection.name, replayed.done, replayed.failed)
            left = parking.parked_positions(connection, projection.name, stream_id)
            if left and replayed.failed is None:
                parking.request(connection, projection.name, stream_id, parking.RETRY)
            _count_change(connection, projection.name)
        if not left:
            self._parked[projection.name].discard(stream_id)
        row = replayed.row
        return [] if row is None else [RecordChanged(projection.name, stream_id, row["_position"])]

    # -- reading ----------------------------------------------------------------------

    async def get(self, projection: Projection, key: str) -> Row | None:
        """One row of the read model, or None."""
        return await self._file.on_reader(
            lambda: self._get(self._file.connection(), projection, key)
        )

    async def select(
        self,
        projection: Projection,
        where: str,
        parameters: tuple[Any, ...],
        order_by: str,
        limit: int,
    ) -> list[Row]:
        """Rows matching `where`. `where` and `order_by` must be constants of the caller's
        code, never request input: every value goes in through `parameters`."""
        sql = f"SELECT * FROM {projection.name} WHERE {where} ORDER BY {order_by} LIMIT ?"

        def run() -> list[Row]:
            cursor = self._file.connection().execute(sql, (*parameters, limit))
            return _as_rows(projection, cursor, cursor.fetchall())

        return await self._file.on_reader(run)

    async def rows(self, projection: Projection) -> list[Row]:
        """Every row of the read model, ordered by key (for checks and exports)."""
        return await self._file.on_reader(self._rows, projection)

    def _get(self, connection: sqlite3.Connection, projection: Projection, key: str) -> Row | None:
        cursor = connection.execute(
            f"SELECT * FROM {projection.name} WHERE {projection.key} = ?", (key,)
        )
        row = cursor.fetchone()
        return None if row is None else _as_rows(projection, cursor, [row])[0]

    def _get_many(
        self, connection: sqlite3.Connection, projection: Projection, keys: set[str]
    ) -> dict[str, Row]:
        """The stored rows of `keys`, in one query per 500 keys."""
        found: dict[str, Row] = {}
        for chunk, marks in in_chunks(keys):
            cursor = connection.execute(
                f"SELECT * FROM {projection.name} WHERE {projection.key} IN ({marks})", chunk
            )
            for row in _as_rows(projection, cursor, cursor.fetchall()):
                found[row[projection.key]] = row
        return found

    def _rows(self, projection: Projection) -> list[Row]:
        cursor = self._file.connection().execute(
            f"SELECT * FROM {projection.name} ORDER BY {projection.key}"
        )
        return _as_rows(projection, cursor, cursor.fetchall())

    def _create_schema(self) -> None:
        connection = self._file.connection()
        connection.executescript(_CHECKPOINTS)
        found = {r[1] for r in connection.execute("PRAGMA table_info(projection_checkpoints)")}
        if "changes" not in found:  # a read store from before the change counter
            try:
                connection.execute(
                    "ALTER TABLE projection_checkpoints"
                    " ADD COLUMN changes INTEGER NOT NULL DEFAULT 0"
                )
            except sqlite3.OperationalError as e:  # another process added it just now
                if "duplicate column" not in str(e):
                    raise
        connection.executescript(parking.PARKED_SCHEMA)
        for projection in self.projections.values():
            for statement in _table_sql(projection):
                connection.execute(statement)
            existing = {r[1] for r in connection.execute(f"PRAGMA table_info({projection.name})")}
            if existing != {*projection.columns, "_position"}:
                # The projection's shape changed: its rows are rebuilt from the log.
                _log.warning("read model %s changed shape; rebuilding it", projection.name)
                self._reset(projection)


def _as_rows(
    projection: Projection, cursor: sqlite3.Cursor, found: list[tuple[Any, ...]]
) -> list[Row]:
    """`found` (values in the cursor's columns) as rows, booleans as bool (SQLite keeps 0/1)."""
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values, strict=True)) for values in found]
    for name in [name for name, kind in projection.columns.items() if kind is bool]:
        for row in rows:
            if row[name] is not None:
                row[name] = bool(row[name])
    return rows


def _checkpoint(connection: sqlite3.Connection, name: str) -> int:
    sql = "SELECT position FROM projection_checkpoints WHERE name = ?"
    row = connection.execute(sql, (name,)).fetchone()
    return int(row[0]) if row else 0


def _set_checkpoint(connection: sqlite3.Connection, name: str, position: int) -> None:
    """Move the checkpoint and count one more change of the read model."""
    connection.execute(
        "INSERT INTO projection_checkpoints (name, position, changes) VALUES (?, ?, 1) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position, changes = changes + 1",
        (name, position),
    )


def _count_change(connection: sqlite3.Connection, name: str) -> None:
    connection.execute(
        "INSERT INTO projection_checkpoints (name, position, changes) VALUES (?, 0, 1) "
        "ON CONFLICT (name) DO UPDATE SET changes = changes + 1",
        (name,),
    )
