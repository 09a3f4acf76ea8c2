"""Where subscriptions are kept: `webhooks.sqlite` in the data directory, or PostgreSQL.

Every process on one deployment reads the same rows: the admin API writes them, the
functions workers poll them (webhooks/catalog.py) and count failures into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

from eventgate.pgschema import open_pool
from eventgate.sqlitefile import SQLiteFile, write_transaction
from eventgate.webhooks.model import Subscription

__all__ = ["PostgresWebhookStore", "SQLiteWebhookStore", "WebhookStore"]

_COLUMNS = (
    "id, url, types, streams, secret, start, retries, backoff, disable_after, enabled,"
    " disabled_reason, failing, version, created, updated, previous_secret, previous_until"
)
_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id text PRIMARY KEY, url text NOT NULL, types text NOT NULL, streams text NOT NULL,
    secret text NOT NULL, start bigint NOT NULL, retries integer NOT NULL,
    backoff double precision NOT NULL, disable_after integer NOT NULL,
    enabled boolean NOT NULL, disabled_reason text, failing integer NOT NULL,
    version integer NOT NULL, created text NOT NULL, updated text NOT NULL
);
"""
_ADDED = ("previous_secret", "previous_until")  # text, NULL: secret rotation (schema 2)
_PG_ADDED = "".join(
    f"ALTER TABLE eventgate_webhooks ADD COLUMN IF NOT EXISTS {c} text;\n" for c in _ADDED
)
_SET = (  # the columns an update writes (all but id, start and created), in `_row`'s order
    "url", "types", "streams", "secret", "retries", "backoff", "disable_after", "enabled",
    "disabled_reason", "failing", "version", "updated", "previous_secret", "previous_until",
)  # fmt: skip
_DISABLED = "{} events in a row dead-lettered; the last: {}"


class WebhookStore(Protocol):
    """The subscriptions of one deployment."""

    async def close(self) -> None: ...
    async def create(self, subscription: Subscription) -> None: ...
    async def all(self) -> list[Subscription]: ...
    async def get(self, subscription_id: str) -> Subscription | None: ...
    async def update(self, subscription: Subscription) -> bool: ...
    async def delete(self, subscription_id: str) -> bool: ...
    async def failed(self, subscription_id: str, error: str) -> Subscription | None: ...
    async def delivered(self, subscription_id: str) -> None: ...


def _row(subscription: Subscription) -> tuple[Any, ...]:
    s = subscription
    return (
        s.id, s.url, orjson.dumps(s.types).decode(), orjson.dumps(s.streams).decode(), s.secret,
        s.start, s.retries, s.backoff, s.disable_after, s.enabled, s.disabled_reason, s.failing,
        s.version, s.created.isoformat(), s.updated.isoformat(), s.previous_secret,
        s.previous_until.isoformat() if s.previous_until else None,
    )  # fmt: skip


def _changes(subscription: Subscription) -> tuple[Any, ...]:
    """The values of `_SET`, in order, then the id and the version the update replaces."""
    row = _row(subscription)
    return (*row[1:5], *row[6:13], *row[14:17], row[0], subscription.version - 1)


def _subscription(row: Sequence[Any]) -> Subscription:
    (id_, url, types, streams, secret, start, retries, backoff, disable_after, enabled,
     reason, failing, version, created, updated, previous, until) = row  # fmt: skip
    return Subscription(
        id_, url, tuple(orjson.loads(types)), tuple(orjson.loads(streams)), secret, start,
        retries, backoff, disable_after, bool(enabled), reason, failing, version,
        datetime.fromisoformat(created), datetime.fromisoformat(updated), previous,
        datetime.fromisoformat(until) if until else None,
    )  # fmt: skip


class SQLiteWebhookStore:
    """Subscriptions in `webhooks.sqlite`; each change one short transaction."""

    def __init__(self, path: Path) -> None:
        self._file = SQLiteFile(path, name="webhooks", readers=1)

    @classmethod
    async def open(cls, path: Path) -> SQLiteWebhookStore:
        store = cls(path)
        await store._file.on_writer(store._create)
        return store

    def _create(self) -> None:
        """Create or upgrade the table in one write transaction: processes opening a new
        file together (`serve functions --workers 2`) would otherwise both find a column
        missing and both add it, and the second would fail to start."""
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute(_TABLE.format(name="webhooks"))
            present = {row[1] for row in connection.execute("PRAGMA table_info(webhooks)")}
            for column in _ADDED:
                if column not in present:
                    connection.execute(f"ALTER TABLE webhooks ADD COLUMN {column} text")

    async def close(self) -> None:
        await self._file.close()

    async def create(self, subscription: Subscription) -> None:
        await self._write(f"INSERT INTO webhooks ({_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                          _row(subscription))  # fmt: skip

    async def all(self) -> list[Subscription]:
        return await self._file.on_reader(self._select, "", ())

    async def get(self, subscription_id: str) -> Subscription | None:
        found = await self._file.on_reader(self._select, "WHERE id = ?", (subscription_id,))
        return found[0] if found else None

    async def update(self, subscription: Subscription) -> bool:
        """Store `subscription` unless it changed since it was read (its version - 1)."""
        sets = ", ".join(f"{c} = ?" for c in _SET)
        sql = f"UPDATE webhooks SET {sets} WHERE id = ? AND version = ?"
        return await self._write(sql, _changes(subscription)) == 1

    async def delete(self, subscription_id: str) -> bool:
        return await self._write("DELETE FROM webhooks WHERE id = ?", (subscription_id,)) == 1

    async def failed(self, subscription_id: str, error: str) -> Subscription | None:
        """Count a dead letter; the `disable_after`-th in a row disables the subscription."""
        return await self._file.on_writer(self._failed, subscription_id, error)

    async def delivered(self, subscription_id: str) -> None:
        await self._write("UPDATE webhooks SET failing = 0 WHERE id = ? AND failing > 0",
                          (subscription_id,))  # fmt: skip

    def _failed(self, subscription_id: str, error: str) -> Subscription | None:
        connection = self._file.connection()
        with write_transaction(connection):
            connection.execute(
                "UPDATE webhooks SET failing = failing + 1 WHERE id = ?", (subscription_id,)
            )
            connection.execute(
                "UPDATE webhooks SET enabled = 0, version = version + 1, disabled_reason ="
                " printf(?, failing), updated = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
                " WHERE id = ? AND enabled AND failing >= disable_after",
                (_DISABLED.format("%d", error.replace("%", "%%")), subscription_id),
            )
        found = self._select("WHERE id = ?", (subscription_id,))
        return found[0] if found else None

    def _select(self, where: str, args: tuple[Any, ...]) -> list[Subscription]:
        sql = f"SELECT {_COLUMNS} FROM webhooks {where} ORDER BY created, id"
        return [_subscription(r) for r in self._file.connection().execute(sql, args)]

    async def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        def write() -> int:
            connection = self._file.connection()
            with write_transaction(connection):
                return connection.execute(sql, args).rowcount

        return await self._file.on_writer(write)


class PostgresWebhookStore:
    """Subscriptions in the table `eventgate_webhooks`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str) -> PostgresWebhookStore:
        ddl = _TABLE.format(name="eventgate_webhooks") + _PG_ADDED
        return cls(await open_pool(dsn, 4, "webhooks", 2, ddl))

    async def close(self) -> None:
        await self._pool.close()

    async def create(self, subscription: Subscription) -> None:
        marks = ", ".join(f"${i}" for i in range(1, 18))
        await self._pool.execute(
            f"INSERT INTO eventgate_webhooks ({_COLUMNS}) VALUES ({marks})", *_row(subscription)
        )

    async def all(self) -> list[Subscription]:
        return await self._select("", ())

    async def get(self, subscription_id: str) -> Subscription | None:
        found = await self._select("WHERE id = $1", (subscription_id,))
        return found[0] if found else None

    async def update(self, subscription: Subscription) -> bool:
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(_SET, 1))
        n = len(_SET)
        status = await self._pool.execute(
            f"UPDATE eventgate_webhooks SET {sets} WHERE id = ${n + 1} AND version = ${n + 2}",
            *_changes(subscription),
        )
        return bool(status == "UPDATE 1")

    async def delete(self, subscription_id: str) -> bool:
        status = await self._pool.execute(
            "DELETE FROM eventgate_webhooks WHERE id = $1", subscription_id
        )
        return bool(status == "DELETE 1")

    async def failed(self, subscription_id: str, error: str) -> Subscription | None:
        row = await self._pool.fetchrow(
            "UPDATE eventgate_webhooks SET failing = failing + 1,"
            " enabled = enabled AND failing + 1 < disable_after,"
            " version = version + CASE WHEN enabled AND failing + 1 >= disable_after"
            " THEN 1 ELSE 0 END,"
            " disabled_reason = CASE WHEN enabled AND failing + 1 >= disable_after"
            " THEN format($2, failing + 1) ELSE disabled_reason END,"
            " updated = CASE WHEN enabled AND failing + 1 >= disable_after"
            " THEN to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')"
            f" ELSE updated END WHERE id = $1 RETURNING {_COLUMNS}",
            subscription_id,
            _DISABLED.format("%s", error.replace("%", "%%")),
        )
        return None if row is None else _subscription(tuple(row))

    async def delivered(self, subscription_id: str) -> None:
        await self._pool.execute(
            "UPDATE eventgate_webhooks SET failing = 0 WHERE id = $1 AND failing > 0",
            subscription_id,
        )

    async def _select(self, where: str, args: tuple[Any, ...]) -> list[Subscription]:
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM eventgate_webhooks {where} ORDER BY created, id", *args
        )
        return [_subscription(tuple(r)) for r in rows]
