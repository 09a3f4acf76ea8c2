"""The functions' state on PostgreSQL: checkpoints, leases, dead letters, effect records.

The same rules as the SQLite file (functions/store.py), for workers on many machines: each
change is one short transaction; lease changes (rebalance, leave) and checkpoint saves
take one advisory lock, so they are serialised as SQLite's write lock serialises them, and
a checkpoint is stored only for partitions its writer still leases (fenced).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
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
from eventgate.pgschema import connect_pool, ensure_schema

__all__ = ["PostgresFunctionStore"]

SCHEMA_VERSION = 1
"""The version of these tables; `eventgate_schema` records it (eventgate/pgschema.py)."""

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
_LEASES_LOCK = 7041775
_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventgate_fn_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS eventgate_fn_functions (
    name text PRIMARY KEY, triggers text NOT NULL, settings text NOT NULL,
    failures bigint NOT NULL DEFAULT 0, invocations bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS eventgate_fn_checkpoints (
    function text NOT NULL, partition integer NOT NULL, position bigint NOT NULL,
    PRIMARY KEY (function, partition)
);
CREATE TABLE IF NOT EXISTS eventgate_fn_workers (
    id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL,
    heartbeat double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS eventgate_fn_leases (
    partition integer PRIMARY KEY, owner text NOT NULL, expires double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS eventgate_fn_dead_letters (
    id bigserial PRIMARY KEY,
    function text NOT NULL, partition integer NOT NULL, event_id text NOT NULL,
    event text NOT NULL, error_type text NOT NULL, error_message text NOT NULL,
    attempts integer NOT NULL, first_failure text NOT NULL, last_failure text NOT NULL,
    status text NOT NULL CHECK (status IN ('dead', 'replay')),
    UNIQUE (function, event_id)
);
CREATE INDEX IF NOT EXISTS eventgate_fn_dead_letters_event ON eventgate_fn_dead_letters (event_id);
CREATE TABLE IF NOT EXISTS eventgate_fn_effects (
    function text NOT NULL, event_id text NOT NULL, name text NOT NULL,
    result text NOT NULL, done_at text NOT NULL,
    PRIMARY KEY (function, event_id, name)
);
"""
_LETTER_COLUMNS = (
    "id, function, event, error_type, error_message, attempts, first_failure, last_failure, status"
)
_OWN_ROWS = (  # (table, column naming the function): what a purge deletes
    ("eventgate_fn_functions", "name"), ("eventgate_fn_checkpoints", "function"),
    ("eventgate_fn_dead_letters", "function"), ("eventgate_fn_effects", "function"),
)  # fmt: skip


class PostgresFunctionStore:
    """`FunctionStore` on PostgreSQL, shared by every worker that reaches the database."""

    def __init__(self, pool: asyncpg.Pool, partitions: int) -> None:
        self._pool = pool
        self.partitions = partitions
        self._effects = GroupWriter(self._write_effects)

    @classmethod
    async def open(cls, dsn: str, partitions: int = DEFAULT_PARTITIONS) -> PostgresFunctionStore:
        """Connect, creating the tables if absent; the first opener fixes the partitions."""
        pool = await connect_pool(dsn, 10)
        try:
            async with pool.acquire() as connection, connection.transaction():
                await ensure_schema(connection, "functions", SCHEMA_VERSION, _SCHEMA)
                await connection.execute(
                    "INSERT INTO eventgate_fn_meta (key, value) VALUES ('partitions', $1)"
                    " ON CONFLICT (key) DO NOTHING",
                    str(partitions),
                )
                stored = await connection.fetchval(
                    "SELECT value FROM eventgate_fn_meta WHERE key = 'partitions'"
                )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, int(stored))

    async def close(self) -> None:
        await self._pool.close()

    # -- registry and checkpoints -------------------------------------------------------

    async def register(self, functions: Sequence[RegisteredFunction]) -> None:
        rows = [(f.name, dumps(list(f.on)), dumps(settings_of(f))) for f in functions]
        async with self._pool.acquire() as connection:
            await connection.executemany(
                "INSERT INTO eventgate_fn_functions (name, triggers, settings) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO UPDATE SET triggers = excluded.triggers,"
                " settings = excluded.settings",
                rows,
            )

    async def load_checkpoints(self, function: str) -> dict[int, int]:
        async with self._pool.acquire() as connection:
            return await self._checkpoints(connection, function)

    async def _checkpoints(self, connection: Connection, function: str) -> dict[int, int]:
        rows = await connection.fetch(
            "SELECT partition, position FROM eventgate_fn_checkpoints WHERE function = $1",
            function,
        )
        stored = {row["partition"]: row["position"] for row in rows}
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
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LEASES_LOCK)
            held = await _owned(connection, owner)
            await connection.executemany(
                "INSERT INTO eventgate_fn_checkpoints (function, partition, position)"
                " VALUES ($1, $2, $3) ON CONFLICT (function, partition)"
                " DO UPDATE SET position = excluded.position",
                [(function, p, position) for p, position in checkpoints.items() if p in held],
            )
            if invocations or failures:
                await connection.execute(
                    "UPDATE eventgate_fn_functions SET invocations = invocations + $1,"
                    " failures = failures + $2 WHERE name = $3",
                    invocations, failures, function,
                )  # fmt: skip
        return frozenset(checkpoints) - held

    async def status(self) -> list[FunctionStatus]:
        async with self._pool.acquire() as connection:
            dead = {
                row["function"]: row["count"]
                for row in await connection.fetch(
                    "SELECT function, COUNT(*) AS count FROM eventgate_fn_dead_letters"
                    " GROUP BY function"
                )
            }
            found = []
            for row in await connection.fetch(
                "SELECT name, triggers, invocations, failures FROM eventgate_fn_functions"
                " ORDER BY name"
            ):
                checkpoints = await self._checkpoints(connection, row["name"])
                found.append(
                    FunctionStatus(row["name"], orjson.loads(row["triggers"]),
                                   min(checkpoints.values()), row["invocations"],
                                   row["failures"], dead.get(row["name"], 0))
                )  # fmt: skip
        return found

    # -- worker leases ------------------------------------------------------------------

    async def rebalance(self, worker: str, ttl: float, release: Iterable[int] = ()) -> Lease:
        """Heartbeat, drop dead workers, give back `release`, renew and claim up to a fair
        share (see SQLiteFunctionStore.rebalance)."""
        now, host = time.time(), socket.gethostname()
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LEASES_LOCK)
            await connection.execute(
                "INSERT INTO eventgate_fn_workers (id, host, pid, heartbeat)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE"
                " SET heartbeat = excluded.heartbeat",
                worker, host, os.getpid(), now,
            )  # fmt: skip
            others = await connection.fetch(
                "SELECT id, pid FROM eventgate_fn_workers WHERE host = $1 AND id != $2",
                host,
                worker,
            )
            gone = [(row["id"],) for row in others if not alive(row["pid"])]
            await connection.executemany("DELETE FROM eventgate_fn_workers WHERE id = $1", gone)
            await connection.execute(
                "DELETE FROM eventgate_fn_workers WHERE heartbeat < $1", now - ttl
            )
            await connection.execute(
                "DELETE FROM eventgate_fn_leases WHERE expires < $1"
                " OR owner NOT IN (SELECT id FROM eventgate_fn_workers)",
                now,
            )
            await connection.executemany(
                "DELETE FROM eventgate_fn_leases WHERE partition = $1 AND owner = $2",
                [(p, worker) for p in release],
            )
            await connection.execute(
                "UPDATE eventgate_fn_leases SET expires = $1 WHERE owner = $2", now + ttl, worker
            )
            live = await connection.fetchval("SELECT COUNT(*) FROM eventgate_fn_workers")
            fair = math.ceil(self.partitions / live)
            owned = await _owned(connection, worker)
            taken = {r["partition"] for r in await connection.fetch(
                "SELECT partition FROM eventgate_fn_leases")}  # fmt: skip
            free = [p for p in range(self.partitions) if p not in taken]
            claim = free[: max(0, fair - len(owned))]
            await connection.executemany(
                "INSERT INTO eventgate_fn_leases (partition, owner, expires) VALUES ($1, $2, $3)",
                [(p, worker, now + ttl) for p in claim],
            )
        return Lease(owned | frozenset(claim), fair)

    async def leave(self, worker: str) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LEASES_LOCK)
            await connection.execute("DELETE FROM eventgate_fn_leases WHERE owner = $1", worker)
            await connection.execute("DELETE FROM eventgate_fn_workers WHERE id = $1", worker)

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
        await self._execute(
            "INSERT INTO eventgate_fn_dead_letters (function, partition, event_id, event,"
            " error_type, error_message, attempts, first_failure, last_failure, status)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'dead')"
            " ON CONFLICT (function, event_id) DO UPDATE"
            " SET error_type = excluded.error_type, error_message = excluded.error_message,"
            " attempts = eventgate_fn_dead_letters.attempts + excluded.attempts,"
            " last_failure = excluded.last_failure, status = 'dead'",
            function, partition, event.id, dumps(event.to_json()), *error, attempts,
            first_failure.isoformat(), datetime.now(UTC).isoformat(),
        )  # fmt: skip

    async def dead_letters(self, function: str | None = None) -> list[DeadLetterRecord]:
        sql = f"SELECT {_LETTER_COLUMNS} FROM eventgate_fn_dead_letters"
        args: tuple[Any, ...] = ()
        if function is not None:
            sql, args = sql + " WHERE function = $1", (function,)
        rows = await self._fetch(sql + " ORDER BY id", *args)
        return [letter(tuple(row)) for row in rows]

    async def dead_letters_of(self, event_ids: Sequence[str]) -> list[DeadLetterRecord]:
        rows = await self._fetch(
            f"SELECT {_LETTER_COLUMNS} FROM eventgate_fn_dead_letters"
            " WHERE event_id = ANY($1::text[]) ORDER BY id",
            list(event_ids),
        )
        return [letter(tuple(row)) for row in rows]

    async def dead_letter_by_id(self, letter_id: int) -> DeadLetterRecord:
        rows = await self._fetch(
            f"SELECT {_LETTER_COLUMNS} FROM eventgate_fn_dead_letters WHERE id = $1", letter_id
        )
        if not rows:
            raise DeadLetterNotFound(letter_id)
        return letter(tuple(rows[0]))

    async def request_replay(
        self, letter_id: int | None = None, function: str | None = None
    ) -> int:
        """Mark one letter (or all, or all of `function`) for replay; returns how many."""
        sql = "UPDATE eventgate_fn_dead_letters SET status = 'replay' WHERE status = 'dead'"
        args: list[Any] = []
        if letter_id is not None:
            args.append(letter_id)
            sql += f" AND id = ${len(args)}"
        if function is not None:
            args.append(function)
            sql += f" AND function = ${len(args)}"
        count = await self._execute(sql, *args)
        if letter_id is not None and count == 0:
            await self.dead_letter_by_id(letter_id)  # raises if it does not exist
        return count

    async def discard(self, letter_id: int) -> None:
        if (
            await self._execute("DELETE FROM eventgate_fn_dead_letters WHERE id = $1", letter_id)
            == 0
        ):
            raise DeadLetterNotFound(letter_id)

    async def replays(
        self, function: str, partitions: Iterable[int], skip: Iterable[int]
    ) -> list[tuple[int, int, FunctionEvent]]:
        chosen, skipped = frozenset(partitions), frozenset(skip)
        rows = await self._fetch(
            "SELECT id, partition, event FROM eventgate_fn_dead_letters"
            " WHERE status = 'replay' AND function = $1 ORDER BY id",
            function,
        )
        return [
            (row["id"], row["partition"], FunctionEvent.from_json(orjson.loads(row["event"])))
            for row in rows
            if row["partition"] in chosen and row["id"] not in skipped
        ]

    async def replayed(self, letter_id: int) -> None:
        await self._execute("DELETE FROM eventgate_fn_dead_letters WHERE id = $1", letter_id)

    # -- effects (the idempotency helper) -----------------------------------------------

    async def effect(self, function: str, event_id: str, name: str) -> tuple[bool, Any]:
        rows = await self._fetch(
            "SELECT result FROM eventgate_fn_effects WHERE function = $1 AND event_id = $2"
            " AND name = $3",
            function, event_id, name,
        )  # fmt: skip
        return (True, orjson.loads(rows[0]["result"])) if rows else (False, None)

    async def record_effect(self, function: str, event_id: str, name: str, result: Any) -> None:
        """Durable when it returns; records of concurrent invocations share one commit."""
        row = (function, event_id, name, dumps(result), datetime.now(UTC).isoformat())
        await self._effects.submit(row)

    async def _write_effects(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        await self._execute(
            "INSERT INTO eventgate_fn_effects (function, event_id, name, result, done_at)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
            " ON CONFLICT DO NOTHING",
            *(list(column) for column in zip(*rows, strict=True)),
        )

    async def forget_effects(self, function: str, event_ids: Iterable[str]) -> None:
        await self._execute(
            "DELETE FROM eventgate_fn_effects WHERE function = $1 AND event_id = ANY($2::text[])"
            " AND event_id NOT IN"
            " (SELECT event_id FROM eventgate_fn_dead_letters WHERE function = $1)",
            function, list(event_ids),
        )  # fmt: skip

    # -- purging what a function removed for good left behind ---------------------------

    async def purge(self, function: str) -> int:
        """Delete all that is kept of `function`; how many rows that was."""
        deleted = 0
        async with self._pool.acquire() as connection, connection.transaction():
            for table, column in _OWN_ROWS:
                status = await connection.execute(
                    f"DELETE FROM {table} WHERE {column} = $1", function
                )
                deleted += int(status.rsplit(" ", 1)[-1])
        return deleted

    async def names(self) -> set[str]:
        sql = " UNION ".join(f"SELECT {column} FROM {table}" for table, column in _OWN_ROWS)
        return {row[0] for row in await self._fetch(sql)}

    # -- plumbing -----------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._pool.acquire() as connection:
            return list(await connection.fetch(sql, *args))

    async def _execute(self, sql: str, *args: Any) -> int:
        """Run a change; the number of rows it touched."""
        async with self._pool.acquire() as connection:
            status = await connection.execute(sql, *args)
        return int(status.rsplit(" ", 1)[-1])


async def _owned(connection: Connection, worker: str) -> frozenset[int]:
    rows = await connection.fetch(
        "SELECT partition FROM eventgate_fn_leases WHERE owner = $1", worker
    )
    return frozenset(row["partition"] for row in rows)
