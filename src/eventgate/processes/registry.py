"""Who is running: every eventgate process's heartbeat, and the named leases they hold.

A process registers with its roles (`gateway`, `commands`, `queries`, `projections`,
`functions`), host, pid and address, and beats every second or so. A process whose
heartbeat is older than the time-to-live, or whose pid is gone on this host, is dropped
with its leases. A lease (one per projection) says which process does a piece of work;
the holder renews it with every beat, and a lease of a dropped process is free to claim.
Each backend keeps this beside the data: `processes.sqlite` in the data directory, or
PostgreSQL tables (timed by the database's clock, so machines' clocks need not agree).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from eventgate.functions.state import alive
from eventgate.pgschema import open_pool
from eventgate.sqlitefile import SQLiteFile, write_transaction

__all__ = [
    "Claim",
    "PostgresProcessRegistry",
    "ProcessRecord",
    "ProcessRegistry",
    "SQLiteProcessRegistry",
]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventgate_processes (
    id        text PRIMARY KEY,
    roles     text NOT NULL,
    host      text NOT NULL,
    pid       integer NOT NULL,
    address   text NOT NULL,
    started   double precision NOT NULL,
    heartbeat double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS eventgate_leases (
    name    text PRIMARY KEY,
    holder  text NOT NULL,
    expires double precision NOT NULL
);
"""
_SQLITE_SCHEMA = _SCHEMA.replace("double precision", "REAL").replace("text", "TEXT")
_PG_LOCK = 7041776


@dataclass(frozen=True)
class ProcessRecord:
    """One registered process, as the registry last heard of it."""

    id: str
    roles: tuple[str, ...]
    host: str
    pid: int
    address: str
    started: float
    heartbeat: float
    leases: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "roles": list(self.roles),
            "host": self.host,
            "pid": self.pid,
            "address": self.address,
            "started": self.started,
            "heartbeat": self.heartbeat,
            "leases": list(self.leases),
        }


@dataclass(frozen=True)
class Claim:
    """The leases a process holds after a claim, and its fair share of the names."""

    held: frozenset[str]
    fair_share: int


class ProcessRegistry(Protocol):
    async def beat(self, record: ProcessRecord, ttl: float) -> None:
        """Record `record`'s heartbeat now; drop processes (and their leases) gone quiet."""
        ...

    async def claim(self, holder: str, names: Sequence[str], role: str, ttl: float) -> Claim:
        """Renew `holder`'s leases among `names` and claim free ones up to its fair share
        (the names over the live processes with `role`)."""
        ...

    async def release(self, holder: str, names: Iterable[str]) -> None:
        """Give back `holder`'s leases of `names`."""
        ...

    async def leave(self, holder: str) -> None:
        """Unregister `holder` and give back all its leases."""
        ...

    async def processes(self) -> list[ProcessRecord]:
        """Every registered process with the leases it holds, oldest first."""
        ...

    async def close(self) -> None: ...


def _choose(
    names: Sequence[str], taken: dict[str, str], holder: str, live: int
) -> tuple[int, set[str], list[str]]:
    """`holder`'s fair share of `names` over `live` processes, the names it holds of them,
    and the free ones it may claim to reach its share; `taken`: each leased name's holder."""
    fair = math.ceil(len(names) / max(live, 1))
    held = {n for n in names if taken.get(n) == holder}
    return fair, held, [n for n in names if n not in taken][: max(0, fair - len(held))]


class SQLiteProcessRegistry:
    """The registry in `processes.sqlite` of a data directory (processes on one machine)."""

    def __init__(self, path: Path) -> None:
        self._file = SQLiteFile(path, name="processes", readers=1, synchronous="NORMAL")

    @classmethod
    async def open(cls, path: Path) -> SQLiteProcessRegistry:
        registry = cls(path)
        await registry._file.on_writer(
            lambda: registry._file.connection().executescript(_SQLITE_SCHEMA)
        )
        return registry

    async def close(self) -> None:
        await self._file.close()

    async def beat(self, record: ProcessRecord, ttl: float) -> None:
        await self._file.on_writer(self._beat, record, ttl)

    async def claim(self, holder: str, names: Sequence[str], role: str, ttl: float) -> Claim:
        return await self._file.on_writer(self._claim, holder, list(names), role, ttl)

    async def release(self, holder: str, names: Iterable[str]) -> None:
        chosen = [(holder, name) for name in names]
        await self._file.on_writer(
            lambda: self._file.connection().executemany(
                "DELETE FROM eventgate_leases WHERE holder = ? AND name = ?", chosen
            )
        )

    async def leave(self, holder: str) -> None:
        await self._file.on_writer(self._leave, holder)

    async def processes(self) -> list[ProcessRecord]:
        return await self._file.on_reader(self._processes)

    def _beat(self, record: ProcessRecord, ttl: float) -> None:
        connection = self._file.connection()
        now = time.time()
        with write_transaction(connection):
            connection.execute(
                "INSERT INTO eventgate_processes (id, roles, host, pid, address, started,"
                " heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET heartbeat = excluded.heartbeat, address = excluded.address",
                (record.id, ",".join(record.roles), record.host, record.pid, record.address,
                 now, now),
            )  # fmt: skip
            rows = connection.execute(
                "SELECT id, pid, heartbeat FROM eventgate_processes WHERE id != ?", (record.id,)
            ).fetchall()
            gone = [(i,) for i, pid, beat in rows if beat < now - ttl or not alive(pid)]
            connection.executemany("DELETE FROM eventgate_processes WHERE id = ?", gone)
            connection.executemany("DELETE FROM eventgate_leases WHERE holder = ?", gone)

    def _claim(self, holder: str, names: list[str], role: str, ttl: float) -> Claim:
        connection = self._file.connection()
        now = time.time()
        with write_transaction(connection):
            connection.execute(
                "DELETE FROM eventgate_leases WHERE expires < ?"
                " OR holder NOT IN (SELECT id FROM eventgate_processes)",
                (now,),
            )
            connection.execute(
                "UPDATE eventgate_leases SET expires = ? WHERE holder = ?", (now + ttl, holder)
            )
            taken = dict(connection.execute("SELECT name, holder FROM eventgate_leases"))
            roles = [r for (r,) in connection.execute("SELECT roles FROM eventgate_processes")]
            live = sum(role in r.split(",") for r in roles)
            fair, held, claim = _choose(names, taken, holder, live)
            connection.executemany(
                "INSERT INTO eventgate_leases (name, holder, expires) VALUES (?, ?, ?)",
                [(n, holder, now + ttl) for n in claim],
            )
        return Claim(frozenset(held | set(claim)), fair)

    def _leave(self, holder: str) -> None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute("DELETE FROM eventgate_leases WHERE holder = ?", (holder,))
            connection.execute("DELETE FROM eventgate_processes WHERE id = ?", (holder,))

    def _processes(self) -> list[ProcessRecord]:
        connection = self._file.connection()
        leases: dict[str, list[str]] = {}
        for name, holder in connection.execute(
            "SELECT name, holder FROM eventgate_leases ORDER BY name"
        ):
            leases.setdefault(holder, []).append(name)
        rows = connection.execute(
            "SELECT id, roles, host, pid, address, started, heartbeat"
            " FROM eventgate_processes ORDER BY started, id"
        ).fetchall()
        return [_record(row, leases) for row in rows]


def _record(row: Sequence[Any], leases: dict[str, list[str]]) -> ProcessRecord:
    id_, roles, host, pid, address, started, heartbeat = row
    return ProcessRecord(id_, tuple(roles.split(",")), host, pid, address, started, heartbeat,
                         tuple(leases.get(id_, ())))  # fmt: skip


_NOW = "extract(epoch FROM clock_timestamp())"


class PostgresProcessRegistry:
    """The registry in PostgreSQL: processes on any machine that reaches the database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str) -> PostgresProcessRegistry:
        return cls(await open_pool(dsn, 2, "processes", SCHEMA_VERSION, _SCHEMA))

    async def close(self) -> None:
        await self._pool.close()

    async def beat(self, record: ProcessRecord, ttl: float) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK)
            await connection.execute(
                "INSERT INTO eventgate_processes (id, roles, host, pid, address, started,"
                f" heartbeat) VALUES ($1, $2, $3, $4, $5, {_NOW}, {_NOW})"
                " ON CONFLICT (id) DO UPDATE"
                " SET heartbeat = excluded.heartbeat, address = excluded.address",
                record.id, ",".join(record.roles), record.host, record.pid, record.address,
            )  # fmt: skip
            rows = await connection.fetch(
                f"SELECT id, host, pid, heartbeat < {_NOW} - $2 AS quiet"
                " FROM eventgate_processes WHERE id != $1",
                record.id,
                ttl,
            )
            gone = [
                (row["id"],)
                for row in rows
                if row["quiet"] or (row["host"] == record.host and not alive(row["pid"]))
            ]
            await connection.executemany("DELETE FROM eventgate_processes WHERE id = $1", gone)
            await connection.executemany("DELETE FROM eventgate_leases WHERE holder = $1", gone)

    async def claim(self, holder: str, names: Sequence[str], role: str, ttl: float) -> Claim:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK)
            await connection.execute(
                f"DELETE FROM eventgate_leases WHERE expires < {_NOW}"
                " OR holder NOT IN (SELECT id FROM eventgate_processes)"
            )
            await connection.execute(
                f"UPDATE eventgate_leases SET expires = {_NOW} + $2 WHERE holder = $1",
                holder,
                ttl,
            )
            taken = {
                r["name"]: r["holder"]
                for r in await connection.fetch("SELECT name, holder FROM eventgate_leases")
            }
            live = await connection.fetchval(
                "SELECT count(*) FROM eventgate_processes"
                " WHERE $1 = ANY(string_to_array(roles, ','))",
                role,
            )
            fair, held, claim = _choose(names, taken, holder, live)
            await connection.executemany(
                "INSERT INTO eventgate_leases (name, holder, expires)"
                f" VALUES ($1, $2, {_NOW} + $3)",
                [(n, holder, ttl) for n in claim],
            )
        return Claim(frozenset(held | set(claim)), fair)

    async def release(self, holder: str, names: Iterable[str]) -> None:
        async with self._pool.acquire() as connection:
            await connection.executemany(
                "DELETE FROM eventgate_leases WHERE holder = $1 AND name = $2",
                [(holder, name) for name in names],
            )

    async def leave(self, holder: str) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute("DELETE FROM eventgate_leases WHERE holder = $1", holder)
            await connection.execute("DELETE FROM eventgate_processes WHERE id = $1", holder)

    async def processes(self) -> list[ProcessRecord]:
        async with self._pool.acquire() as connection:
            leases: dict[str, list[str]] = {}
            for row in await connection.fetch(
                "SELECT name, holder FROM eventgate_leases ORDER BY name"
            ):
                leases.setdefault(row["holder"], []).append(row["name"])
            rows = await connection.fetch(
                "SELECT id, roles, host, pid, address, started, heartbeat"
                " FROM eventgate_processes ORDER BY started, id"
            )
        return [_record(tuple(row), leases) for row in rows]
