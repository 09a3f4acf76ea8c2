"""Durable checkpoints: the last position each named subscriber has fully handled."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from eventgate.sqlitefile import SQLiteFile

__all__ = ["CheckpointStore", "SQLiteCheckpointStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL CHECK (position >= 0)
) WITHOUT ROWID;
"""


class CheckpointStore(Protocol):
    """Where subscribers keep their positions. A projection's read store is one too, so
    the read-model change and the checkpoint can commit in one transaction."""

    async def load_checkpoint(self, name: str) -> int:
        """The stored position of `name`, 0 if it never stored one."""
        ...

    async def save_checkpoint(self, name: str, position: int) -> None:
        """Durably store `position` as the checkpoint of `name`."""
        ...


class SQLiteCheckpointStore:
    """Checkpoints of plain subscribers, in their own SQLite file."""

    def __init__(self, path: Path) -> None:
        self._file = SQLiteFile(path, name="checkpoints", readers=1)

    @classmethod
    async def open(cls, path: Path) -> SQLiteCheckpointStore:
        store = cls(path)
        await store._file.on_writer(lambda: store._file.connection().executescript(_SCHEMA))
        return store

    async def load_checkpoint(self, name: str) -> int:
        return await self._file.on_reader(self._load, name)

    async def save_checkpoint(self, name: str, position: int) -> None:
        await self._file.on_writer(self._save, name, position)

    async def close(self) -> None:
        await self._file.close()

    def _load(self, name: str) -> int:
        sql = "SELECT position FROM checkpoints WHERE name = ?"
        row = self._file.connection().execute(sql, (name,)).fetchone()
        return int(row[0]) if row else 0

    def _save(self, name: str, position: int) -> None:
        self._file.connection().execute(
            "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )
