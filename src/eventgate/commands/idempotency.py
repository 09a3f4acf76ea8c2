"""Idempotency keys for POST: the first response is stored and replayed to retries.

A key is scoped to the consumer, the method and the path. The first request claims the
key (in flight); its final response (any status below 500) is stored with a fingerprint
of the request. A retry with the same fingerprint gets that response again and changes
nothing; another fingerprint under the same key is refused (422); a retry while the first
is still in flight is refused (409). A 5xx or a crash releases the claim, and a claim
left by a killed process expires after `claim_timeout` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

from eventgate.pgschema import open_pool
from eventgate.sqlitefile import SQLiteFile, write_transaction

__all__ = [
    "Claimed",
    "IdempotencyStore",
    "InFlight",
    "Mismatch",
    "PostgresIdempotencyStore",
    "Replay",
    "SQLiteIdempotencyStore",
]

SCHEMA_VERSION = 1
"""The version of these tables; `eventgate_schema` records it (eventgate/pgschema.py)."""

RETENTION = 24 * 3600.0
CLAIM_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status      INTEGER,            -- NULL while the first request is in flight
    headers     TEXT,
    body        BLOB,
    created     REAL NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Claimed:
    """This request owns the key; complete or release it."""


@dataclass(frozen=True)
class Replay:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class InFlight:
    """The first request with this key has not finished yet."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used before for a different request."""


Outcome = Claimed | Replay | InFlight | Mismatch


class IdempotencyStore(Protocol):
    """Where first responses are kept (one SQLite file, or PostgreSQL)."""

    async def claim(self, scope: str, fingerprint: str) -> Outcome:
        """Claim `scope` for this request, or say what happened to it before."""
        ...

    async def complete(
        self, scope: str, status: int, headers: dict[str, str], body: bytes
    ) -> None: ...

    async def release(self, scope: str) -> None:
        """Give up a claim that did not complete (a 5xx, an error)."""
        ...

    async def close(self) -> None: ...


def _outcome(row: Any, fingerprint: str) -> Outcome:
    """What a stored row (fingerprint, status, headers, body) means for this request."""
    if row[0] != fingerprint:
        return Mismatch()
    if row[1] is None:
        return InFlight()
    return Replay(row[1], orjson.loads(row[2]), bytes(row[3]))


class SQLiteIdempotencyStore:
    """Stored first responses, in their own SQLite file."""

    def __init__(
        self, path: Path, *, retention: float = RETENTION, claim_timeout: float = CLAIM_TIMEOUT
    ) -> None:
        self._file = SQLiteFile(path, name="idempotency", readers=1)
        self._retention = retention
        self._claim_timeout = claim_timeout

    @classmethod
    async def open(cls, path: Path, **options: float) -> SQLiteIdempotencyStore:
        store = cls(path, **options)
        await store._file.on_writer(lambda: store._file.connection().executescript(_SCHEMA))
        return store

    async def close(self) -> None:
        await self._file.close()

    async def claim(self, scope: str, fingerprint: str) -> Outcome:
        return await self._file.on_writer(self._claim, scope, fingerprint, time.time())

    async def complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        await self._file.on_writer(self._complete, scope, status, headers, body)

    async def release(self, scope: str) -> None:
        await self._file.on_writer(
            lambda: self._file.connection().execute(
                "DELETE FROM idempotency_keys WHERE scope = ? AND status IS NULL", (scope,)
            )
        )

    def _claim(self, scope: str, fingerprint: str, now: float) -> Outcome:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute(
                "DELETE FROM idempotency_keys"
                " WHERE created < ? OR (status IS NULL AND created < ?)",
                (now - self._retention, now - self._claim_timeout),
            )
            row = connection.execute(
                "SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE scope = ?",
                (scope,),
            ).fetchone()
            if row is not None:
                return _outcome(row, fingerprint)
            connection.execute(
                "INSERT INTO idempotency_keys (scope, fingerprint, created) VALUES (?, ?, ?)",
                (scope, fingerprint, now),
            )
        return Claimed()

    def _complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self._file.connection().execute(
            "UPDATE idempotency_keys SET status = ?, headers = ?, body = ? WHERE scope = ?",
            (status, orjson.dumps(headers).decode(), body, scope),
        )


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS eventgate_idempotency_keys (
    scope       text PRIMARY KEY,
    fingerprint text NOT NULL,
    status      integer,
    headers     text,
    body        bytea,
    created     double precision NOT NULL
);
"""


class PostgresIdempotencyStore:
    """Stored first responses on PostgreSQL, shared by every command process."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retention: float = RETENTION,
        claim_timeout: float = CLAIM_TIMEOUT,
    ) -> None:
        self._pool = pool
        self._retention = retention
        self._claim_timeout = claim_timeout

    @classmethod
    async def open(cls, dsn: str, **options: float) -> PostgresIdempotencyStore:
        return cls(await open_pool(dsn, 10, "idempotency", SCHEMA_VERSION, _PG_SCHEMA), **options)

    async def close(self) -> None:
        await self._pool.close()

    async def claim(self, scope: str, fingerprint: str) -> Outcome:
        """Insert the claim, or read what holds the key; one statement each, so two
        processes claiming one key at once get one Claimed and one InFlight."""
        now = time.time()
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "DELETE FROM eventgate_idempotency_keys"
                " WHERE created < $1 OR (status IS NULL AND created < $2)",
                now - self._retention, now - self._claim_timeout,
            )  # fmt: skip
            inserted = await connection.fetchval(
                "INSERT INTO eventgate_idempotency_keys (scope, fingerprint, created)"
                " VALUES ($1, $2, $3) ON CONFLICT (scope) DO NOTHING RETURNING 1",
                scope, fingerprint, now,
            )  # fmt: skip
            if inserted:
                return Claimed()
            row = await connection.fetchrow(
                "SELECT fingerprint, status, headers, body FROM eventgate_idempotency_keys"
                " WHERE scope = $1",
                scope,
            )
        return Claimed() if row is None else _outcome(row, fingerprint)

    async def complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(
                "UPDATE eventgate_idempotency_keys SET status = $2, headers = $3, body = $4"
                " WHERE scope = $1",
                scope, status, orjson.dumps(headers).decode(), body,
            )  # fmt: skip

    async def release(self, scope: str) -> None:
        async with self._pool.acquire() as connection:
            await connection.execute(
                "DELETE FROM eventgate_idempotency_keys WHERE scope = $1 AND status IS NULL", scope
            )
