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

import orjson

from eventgate.sqlitefile import SQLiteFile, write_transaction

__all__ = ["Claimed", "IdempotencyStore", "InFlight", "Mismatch", "Replay"]

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


class IdempotencyStore:
    """Stored first responses, in their own SQLite file."""

    def __init__(
        self, path: Path, *, retention: float = 24 * 3600, claim_timeout: float = 30.0
    ) -> None:
        self._file = SQLiteFile(path, name="idempotency", readers=1)
        self._retention = retention
        self._claim_timeout = claim_timeout

    @classmethod
    async def open(cls, path: Path, **options: float) -> IdempotencyStore:
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
            outcome: Outcome
            if row is None:
                connection.execute(
                    "INSERT INTO idempotency_keys (scope, fingerprint, created) VALUES (?, ?, ?)",
                    (scope, fingerprint, now),
                )
                outcome = Claimed()
            elif row[0] != fingerprint:
                outcome = Mismatch()
            elif row[1] is None:
                outcome = InFlight()
            else:
                outcome = Replay(row[1], orjson.loads(row[2]), bytes(row[3]))
        return outcome

    def _complete(self, scope: str, status: int, headers: dict[str, str], body: bytes) -> None:
        self._file.connection().execute(
            "UPDATE idempotency_keys SET status = ?, headers = ?, body = ? WHERE scope = ?",
            (status, orjson.dumps(headers).decode(), body, scope),
        )
