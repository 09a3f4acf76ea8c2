"""The query side's own storage on a SQLite file: one table per projection, plus checkpoints.

Each delivery is applied in one transaction that also moves the projection's checkpoint,
and only if the checkpoint still is where the delivery starts (compare-and-set). So a
crash can neither lose nor double-apply an event, and two runners of one projection
(a live one and a rebuild, say) can never both apply the same batch.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from eventgate.errors import ProjectionError, StaleCheckpoint
from eventgate.hub.hub import Delivery
from eventgate.projections.changes import RecordChanged
from eventgate.projections.projection import COLUMN_TYPES, Projection, Row
from eventgate.sqlitefile import SQLiteFile, in_chunks, write_transaction

__all__ = ["SQLiteReadStore"]

_log = logging.getLogger(__name__)

_CHECKPOINTS = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL CHECK (position >= 0)
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


class SQLiteReadStore:
    """Read models of the given projections; also the `CheckpointStore` of their runners."""

    def __init__(self, path: Path, projections: Iterable[Projection]) -> None:
        self.path = Path(path)
        self.projections = {p.name: p for p in projections}
        # NORMAL, not FULL: a change and its checkpoint still commit atomically, so a power
        # loss can only take both back together, and they are replayed from the durable log.
        self._file = SQLiteFile(self.path, name="readstore", synchronous="NORMAL")

    @classmethod
    async def open(cls, path: Path, projections: Iterable[Projection]) -> SQLiteReadStore:
        """Open (creating tables as needed) the read store at `path`."""
        store = cls(path, projections)
        await store._file.on_writer(store._create_schema)
        return store

    async def close(self) -> None:
        await self._file.close()

    def projection(self, name: str) -> Projection:
        """The projection called `name`, or a clear error."""
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise ProjectionError(f"no projection named {name!r} (known: {known})") from None

    # -- CheckpointStore --------------------------------------------------------------

    async def load_checkpoint(self, name: str) -> int:
        return await self._file.on_reader(lambda: _checkpoint(self._file.connection(), name))

    async def save_checkpoint(self, name: str, position: int) -> None:
        raise ProjectionError("projection checkpoints move only with their changes (apply)")

    # -- writing ----------------------------------------------------------------------

    async def apply(self, projection: Projection, delivery: Delivery) -> list[RecordChanged]:
        """Apply `delivery` and move the checkpoint in one transaction."""
        return await self._file.on_writer(self._apply, projection, delivery)

    async def reset(self, projection: Projection) -> None:
        """Recreate the read model empty and set its checkpoint to 0, in one transaction."""
        await self._file.on_writer(self._reset, projection)

    def _apply(self, projection: Projection, delivery: Delivery) -> list[RecordChanged]:
        connection = self._file.connection()
        with write_transaction(connection):
            stored = _checkpoint(connection, projection.name)
            if stored != delivery.after:
                raise StaleCheckpoint(
                    f"projection {projection.name} is at {stored}, not {delivery.after}"
                )
            changed = self._fold(connection, projection, delivery)
            self._upsert(connection, projection, changed.values())
            _set_checkpoint(connection, projection.name, delivery.position)
        return [
            RecordChanged(projection.name, key, row["_position"]) for key, row in changed.items()
        ]

    def _fold(
        self, connection: sqlite3.Connection, projection: Projection, delivery: Delivery
    ) -> dict[str, Row]:
        """New rows by key, each with the position of the event that last changed it."""
        stored = self._get_many(connection, projection, {e.stream_id for e in delivery.events})
        changed: dict[str, Row] = {}
        for event in delivery.events:
            key = event.stream_id
            current = changed.get(key) or stored.get(key)
            if current is not None:
                current = {c: v for c, v in current.items() if c != "_position"}
            new = projection.apply(current, event)
            if new is None:
                continue
            if new[projection.key] != key:
                raise ProjectionError(
                    f"projection {projection.name}: a row for stream {key!r} must keep"
                    f" {projection.key} = {key!r}"
                )
            changed[key] = {**new, "_position": event.position}
        return changed

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
        connection.executemany(sql, [tuple(row[c] for c in columns) for row in rows])

    def _reset(self, projection: Projection) -> None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute(f"DROP TABLE IF EXISTS {projection.name}")
            for statement in _table_sql(projection):
                connection.execute(statement)
            _set_checkpoint(connection, projection.name, 0)

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
            return [_row(projection, cursor.description, row) for row in cursor.fetchall()]

        return await self._file.on_reader(run)

    async def rows(self, projection: Projection) -> list[Row]:
        """Every row of the read model, ordered by key (for checks and exports)."""
        return await self._file.on_reader(self._rows, projection)

    def _get(self, connection: sqlite3.Connection, projection: Projection, key: str) -> Row | None:
        cursor = connection.execute(
            f"SELECT * FROM {projection.name} WHERE {projection.key} = ?", (key,)
        )
        row = cursor.fetchone()
        return None if row is None else _row(projection, cursor.description, row)

    def _get_many(
        self, connection: sqlite3.Connection, projection: Projection, keys: set[str]
    ) -> dict[str, Row]:
        """The stored rows of `keys`, in one query per 500 keys."""
        found: dict[str, Row] = {}
        for chunk, marks in in_chunks(keys):
            cursor = connection.execute(
                f"SELECT * FROM {projection.name} WHERE {projection.key} IN ({marks})", chunk
            )
            for values in cursor.fetchall():
                row = _row(projection, cursor.description, values)
                found[row[projection.key]] = row
        return found

    def _rows(self, projection: Projection) -> list[Row]:
        cursor = self._file.connection().execute(
            f"SELECT * FROM {projection.name} ORDER BY {projection.key}"
        )
        return [_row(projection, cursor.description, row) for row in cursor.fetchall()]

    def _create_schema(self) -> None:
        connection = self._file.connection()
        connection.executescript(_CHECKPOINTS)
        for projection in self.projections.values():
            for statement in _table_sql(projection):
                connection.execute(statement)
            existing = {r[1] for r in connection.execute(f"PRAGMA table_info({projection.name})")}
            if existing != {*projection.columns, "_position"}:
                # The projection's shape changed: its rows are rebuilt from the log.
                _log.warning("read model %s changed shape; rebuilding it", projection.name)
                self._reset(projection)


def _row(projection: Projection, description: Any, values: tuple[Any, ...]) -> Row:
    row = {column[0]: value for column, value in zip(description, values, strict=True)}
    for name, kind in projection.columns.items():
        if kind is bool and row[name] is not None:
            row[name] = bool(row[name])
    return row


def _checkpoint(connection: sqlite3.Connection, name: str) -> int:
    sql = "SELECT position FROM projection_checkpoints WHERE name = ?"
    row = connection.execute(sql, (name,)).fetchone()
    return int(row[0]) if row else 0


def _set_checkpoint(connection: sqlite3.Connection, name: str, position: int) -> None:
    connection.execute(
        "INSERT INTO projection_checkpoints (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        (name, position),
    )
