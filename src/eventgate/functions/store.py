"""The functions' own SQLite file: checkpoints, dead letters, effect records, worker leases.

Every worker process, `eventgate up` and the CLI open the same file; SQLite's write lock
serialises them, and each change here is one short transaction. synchronous=FULL: a dead
letter or an effect record that was reported stored survives a power cut.
"""

from __future__ import annotations

import math
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from eventgate.batching import GroupWriter
from eventgate.errors import DeadLetterNotFound
from eventgate.functions.model import FunctionEvent
from eventgate.functions.state import (
    DEFAULT_PARTITIONS,
    DeadLetterRecord,
    FunctionStatus,
    Lease,
    RegisteredFunction,
    alive,
    dumps,
    letter,
    settings_of,
)
from eventgate.sqlitefile import SQLiteFile, in_chunks, write_transaction

__all__ = ["SQLiteFunctionStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY, triggers TEXT NOT NULL, settings TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0, invocations INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    function TEXT NOT NULL, partition INTEGER NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (function, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, heartbeat REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    partition INTEGER PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL, partition INTEGER NOT NULL, event_id TEXT NOT NULL,
    event TEXT NOT NULL, error_type TEXT NOT NULL, error_message TEXT NOT NULL,
    attempts INTEGER NOT NULL, first_failure TEXT NOT NULL, last_failure TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('dead', 'replay')),
    UNIQUE (function, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_replay ON dead_letters (status, function);
CREATE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_id);
CREATE TABLE IF NOT EXISTS effects (
    function TEXT NOT NULL, event_id TEXT NOT NULL, name TEXT NOT NULL,
    result TEXT NOT NULL, done_at TEXT NOT NULL,
    PRIMARY KEY (function, event_id, name)
) WITHOUT ROWID;
"""

_LETTER_COLUMNS = (
    "id, function, event, error_type, error_message, attempts, first_failure, last_failure, status"
)
_OWN_ROWS = (  # (table, column naming the function): what a purge deletes
    ("functions", "name"), ("checkpoints", "function"), ("dead_letters", "function"),
    ("effects", "function"),
)  # fmt: skip


class SQLiteFunctionStore:
    """Durable state of every function, shared by all the processes on one data directory."""

    def __init__(self, path: Path) -> None:
        self._file = SQLiteFile(path, name="functions", readers=2)
        self.partitions = DEFAULT_PARTITIONS
        self._effects = GroupWriter(self._write_effects)

    @classmethod
    async def open(cls, path: Path, partitions: int = DEFAULT_PARTITIONS) -> SQLiteFunctionStore:
        """Open (creating if needed); the first opener fixes the number of partitions."""
        store = cls(path)
        store.partitions = await store._file.on_writer(store._create, partitions)
        return store

    async def close(self) -> None:
        await self._file.close()

    def _create(self, partitions: int) -> int:
        connection = self._file.connection()
        connection.executescript(_SCHEMA)
        connection.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('partitions', ?)", (str(partitions),)
        )
        row = connection.execute("SELECT value FROM meta WHERE key = 'partitions'").fetchone()
        return int(row[0])

    # -- registry and checkpoints -------------------------------------------------------

    async def register(self, functions: Sequence[RegisteredFunction]) -> None:
        """Record which functions exist and how they run, for `functions list`."""
        rows = [(f.name, dumps(list(f.on)), dumps(settings_of(f))) for f in functions]
        await self._file.on_writer(self._register, rows)

    def _register(self, rows: list[tuple[str, str, str]]) -> None:
        self._file.connection().executemany(
            "INSERT INTO functions (name, triggers, settings) VALUES (?, ?, ?) ON CONFLICT (name)"
            " DO UPDATE SET triggers = excluded.triggers, settings = excluded.settings",
            rows,
        )

    async def load_checkpoints(self, function: str) -> dict[int, int]:
        """Each partition's checkpoint (partitions never stored are at 0)."""
        return await self._file.on_reader(self._load_checkpoints, function)

    def _load_checkpoints(self, function: str) -> dict[int, int]:
        sql = "SELECT partition, position FROM checkpoints WHERE function = ?"
        stored = dict(self._file.connection().execute(sql, (function,)).fetchall())
        return {p: stored.get(p, 0) for p in range(self.partitions)}

    async def save_progress(
        self,
        function: str,
        owner: str,
        checkpoints: Mapping[int, int],
        invocations: int = 0,
        failures: int = 0,
    ) -> frozenset[int]:
        """Store checkpoints of partitions `owner` still leases; returns the ones it lost."""
        return await self._file.on_writer(
            self._save_progress, function, owner, dict(checkpoints), invocations, failures
        )

    def _save_progress(
        self, function: str, owner: str, checkpoints: dict[int, int], invocations: int, failed: int
    ) -> frozenset[int]:
        connection = self._file.connection()
        with write_transaction(connection):
            held = _owned(connection, owner)
            connection.executemany(
                "INSERT INTO checkpoints (function, partition, position) VALUES (?, ?, ?)"
                " ON CONFLICT (function, partition) DO UPDATE SET position = excluded.position",
                [(function, p, position) for p, position in checkpoints.items() if p in held],
            )
            if invocations or failed:
                connection.execute(
                    "UPDATE functions SET invocations = invocations + ?, failures = failures + ?"
                    " WHERE name = ?",
                    (invocations, failed, function),
                )
        return frozenset(checkpoints) - held

    async def status(self) -> list[FunctionStatus]:
        return await self._file.on_reader(self._status)

    def _status(self) -> list[FunctionStatus]:
        connection = self._file.connection()
        dead = dict(
            connection.execute("SELECT function, COUNT(*) FROM dead_letters GROUP BY function")
        )
        found = []
        for name, triggers, invocations, failures in connection.execute(
            "SELECT name, triggers, invocations, failures FROM functions ORDER BY name"
        ).fetchall():
            checkpoints = self._load_checkpoints(name)
            found.append(
                FunctionStatus(
                    name,
                    orjson.loads(triggers),
                    min(checkpoints.values()),
                    invocations,
                    failures,
                    dead.get(name, 0),
                )
            )
        return found

    # -- worker leases ------------------------------------------------------------------

    async def rebalance(self, worker: str, ttl: float, release: Iterable[int] = ()) -> Lease:
        """Heartbeat, drop dead workers, give back `release`, renew and claim up to a fair share.

        A worker owns a partition while its lease is unexpired; it renews every heartbeat.
        A worker that stops heartbeating (killed) loses its leases after `ttl`, sooner when
        it ran on this host and its process is gone.
        """
        return await self._file.on_writer(self._rebalance, worker, ttl, frozenset(release))

    def _rebalance(self, worker: str, ttl: float, release: frozenset[int]) -> Lease:
        connection = self._file.connection()
        now, host = time.time(), socket.gethostname()
        with write_transaction(connection):
            connection.execute(
                "INSERT INTO workers (id, host, pid, heartbeat) VALUES (?, ?, ?, ?) ON CONFLICT"
                " (id) DO UPDATE SET heartbeat = excluded.heartbeat",
                (worker, host, os.getpid(), now),
            )
            gone = [
                (other,)
                for other, pid in connection.execute(
                    "SELECT id, pid FROM workers WHERE host = ? AND id != ?", (host, worker)
                )
                if not alive(pid)
            ]
            connection.executemany("DELETE FROM workers WHERE id = ?", gone)
            connection.execute("DELETE FROM workers WHERE heartbeat < ?", (now - ttl,))
            connection.execute(
                "DELETE FROM leases WHERE expires < ? OR owner NOT IN (SELECT id FROM workers)",
                (now,),
            )
            connection.executemany(
                "DELETE FROM leases WHERE partition = ? AND owner = ?",
                [(p, worker) for p in release],
            )
            connection.execute("UPDATE leases SET expires = ? WHERE owner = ?", (now + ttl, worker))
            live = connection.execute("SELECT COUNT(*) FROM workers").fetchone()[0]
            fair = math.ceil(self.partitions / live)
            owned = _owned(connection, worker)
            taken = {p for (p,) in connection.execute("SELECT partition FROM leases")}
            free = [p for p in range(self.partitions) if p not in taken]
            claim = free[: max(0, fair - len(owned))]
            connection.executemany(
                "INSERT INTO leases (partition, owner, expires) VALUES (?, ?, ?)",
                [(p, worker, now + ttl) for p in claim],
            )
        return Lease(owned | frozenset(claim), fair)

    async def leave(self, worker: str) -> None:
        """Give up every lease at once (clean shutdown), so others need not wait for `ttl`."""
        await self._file.on_writer(self._leave, worker)

    def _leave(self, worker: str) -> None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute("DELETE FROM leases WHERE owner = ?", (worker,))
            connection.execute("DELETE FROM workers WHERE id = ?", (worker,))

    # -- dead letters -------------------------------------------------------------------

    async def dead_letter(
        self,
        function: str,
        partition: int,
        event: FunctionEvent,
        error: tuple[str, str],
        attempts: int,
        first_failure: datetime,
    ) -> None:
        """Park `event` (again, after a failed replay: attempts add up, first failure stays)."""
        row = (
            function,
            partition,
            event.id,
            dumps(event.to_json()),
            *error,
            attempts,
            first_failure.isoformat(),
            datetime.now(UTC).isoformat(),
        )
        await self._file.on_writer(self._dead_letter, row)

    def _dead_letter(self, row: tuple[Any, ...]) -> None:
        self._file.connection().execute(
            "INSERT INTO dead_letters (function, partition, event_id, event, error_type,"
            " error_message, attempts, first_failure, last_failure, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'dead') ON CONFLICT (function, event_id) DO UPDATE"
            " SET error_type = excluded.error_type, error_message = excluded.error_message,"
            " attempts = attempts + excluded.attempts, last_failure = excluded.last_failure,"
            " status = 'dead'",
            row,
        )

    async def dead_letters(self, function: str | None = None) -> list[DeadLetterRecord]:
        sql = f"SELECT {_LETTER_COLUMNS} FROM dead_letters"
        args: tuple[Any, ...] = ()
        if function is not None:
            sql, args = sql + " WHERE function = ?", (function,)
        rows = await self._file.on_reader(self._select, sql + " ORDER BY id", args)
        return [letter(row) for row in rows]

    async def dead_letters_of(self, event_ids: Sequence[str]) -> list[DeadLetterRecord]:
        letters: list[DeadLetterRecord] = []
        for chunk, marks in in_chunks(event_ids):
            sql = f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE event_id IN ({marks})"
            rows = await self._file.on_reader(self._select, sql + " ORDER BY id", tuple(chunk))
            letters += [letter(row) for row in rows]
        return letters

    async def dead_letter_by_id(self, letter_id: int) -> DeadLetterRecord:
        sql = f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE id = ?"
        rows = await self._file.on_reader(self._select, sql, (letter_id,))
        if not rows:
            raise DeadLetterNotFound(letter_id)
        return letter(rows[0])

    async def request_replay(
        self, letter_id: int | None = None, function: str | None = None
    ) -> int:
        """Mark one letter (or all, or all of `function`) for replay; returns how many."""
        sql = "UPDATE dead_letters SET status = 'replay' WHERE status = 'dead'"
        args: list[Any] = []
        if letter_id is not None:
            sql, args = sql + " AND id = ?", [letter_id]
        if function is not None:
            sql, args = sql + " AND function = ?", [*args, function]
        count = await self._file.on_writer(self._change, sql, tuple(args))
        if letter_id is not None and count == 0:
            await self.dead_letter_by_id(letter_id)  # raises if it does not exist
        return count

    async def discard(self, letter_id: int) -> None:
        sql = "DELETE FROM dead_letters WHERE id = ?"
        if await self._file.on_writer(self._change, sql, (letter_id,)) == 0:
            raise DeadLetterNotFound(letter_id)

    async def replays(
        self, function: str, partitions: Iterable[int], skip: Iterable[int]
    ) -> list[tuple[int, int, FunctionEvent]]:
        """Letters of `function` marked for replay in `partitions`, not among `skip` ids."""
        chosen, skipped = frozenset(partitions), frozenset(skip)
        sql = (
            "SELECT id, partition, event FROM dead_letters WHERE status = 'replay' AND function = ?"
        )
        rows = await self._file.on_reader(self._select, sql + " ORDER BY id", (function,))
        return [
            (letter_id, partition, FunctionEvent.from_json(orjson.loads(event)))
            for letter_id, partition, event in rows
            if partition in chosen and letter_id not in skipped
        ]

    async def replayed(self, letter_id: int) -> None:
        """A replay succeeded: the letter is done."""
        await self._file.on_writer(
            self._change, "DELETE FROM dead_letters WHERE id = ?", (letter_id,)
        )

    # -- effects (the idempotency helper) -----------------------------------------------

    async def effect(self, function: str, event_id: str, name: str) -> tuple[bool, Any]:
        """(True, result) if the effect `name` was recorded for this event, else (False, None)."""
        sql = "SELECT result FROM effects WHERE function = ? AND event_id = ? AND name = ?"
        rows = await self._file.on_reader(self._select, sql, (function, event_id, name))
        return (True, orjson.loads(rows[0][0])) if rows else (False, None)

    async def record_effect(self, function: str, event_id: str, name: str, result: Any) -> None:
        """Durable when it returns; records of concurrent invocations share one commit."""
        row = (function, event_id, name, dumps(result), datetime.now(UTC).isoformat())
        await self._effects.submit(row)

    async def _write_effects(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        await self._file.on_writer(self._insert_effects, rows)

    def _insert_effects(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.executemany(
                "INSERT OR IGNORE INTO effects (function, event_id, name, result, done_at)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def forget_effects(self, function: str, event_ids: Iterable[str]) -> None:
        """Drop the effect records of events that can no longer be redelivered."""
        await self._file.on_writer(self._forget_effects, function, list(event_ids))

    def _forget_effects(self, function: str, event_ids: list[str]) -> None:
        connection = self._file.connection()
        for chunk, marks in in_chunks(event_ids):
            connection.execute(
                f"DELETE FROM effects WHERE function = ? AND event_id IN ({marks})"
                " AND event_id NOT IN (SELECT event_id FROM dead_letters WHERE function = ?)",
                (function, *chunk, function),
            )

    # -- purging what a function removed for good left behind ---------------------------

    async def purge(self, function: str) -> int:
        """Delete all that is kept of `function`; how many rows that was."""
        return await self._file.on_writer(self._purge, function)

    def _purge(self, function: str) -> int:
        connection = self._file.connection()
        with write_transaction(connection):
            return sum(
                connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (function,)).rowcount
                for table, column in _OWN_ROWS
            )

    async def names(self) -> set[str]:
        sql = " UNION ".join(f"SELECT {column} FROM {table}" for table, column in _OWN_ROWS)
        return {name for (name,) in await self._file.on_reader(self._select, sql, ())}

    # -- plumbing -----------------------------------------------------------------------

    def _select(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._file.connection().execute(sql, args).fetchall()

    def _change(self, sql: str, args: tuple[Any, ...]) -> int:
        return self._file.connection().execute(sql, args).rowcount


def _owned(connection: sqlite3.Connection, worker: str) -> frozenset[int]:
    sql = "SELECT partition FROM leases WHERE owner = ?"
    return frozenset(p for (p,) in connection.execute(sql, (worker,)))
