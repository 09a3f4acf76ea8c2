"""Versioned schemas on PostgreSQL: each store creates or upgrades its tables under one lock.

Every store records its schema's version in `eventgate_schema`. Opening a store (or
`eventgate migrate`) creates what is absent and records the version; a database whose
schema is newer than this eventgate knows is refused rather than written with old rules.
A later release adds upgrade steps from each older version here.
"""

from __future__ import annotations

import secrets

import asyncpg

from eventgate.errors import ConfigError, EventgateError, EventStoreError

__all__ = ["connect_pool", "ensure_schema", "open_pool", "schema_versions", "shared_key"]

_LOCK = 7041770
_TABLE = """
CREATE TABLE IF NOT EXISTS eventgate_schema (
    component text PRIMARY KEY,
    version   integer NOT NULL
);
"""

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


async def ensure_schema(connection: Connection, component: str, version: int, ddl: str) -> None:
    """Inside the caller's transaction: create `component`'s tables (`ddl`, idempotent) and
    record `version`, serialised with every other store's schema work by one lock."""
    await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
    await connection.execute(_TABLE)
    stored = await connection.fetchval(
        "SELECT version FROM eventgate_schema WHERE component = $1", component
    )
    if stored is not None and stored > version:
        raise ConfigError(
            f"the database's {component} schema is version {stored}, newer than the {version}"
            " this eventgate knows: upgrade eventgate"
        )
    await connection.execute(ddl)
    await connection.execute(
        "INSERT INTO eventgate_schema (component, version) VALUES ($1, $2)"
        " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
        component,
        version,
    )


async def connect_pool(
    dsn: str, max_size: int, error: type[EventgateError] = EventStoreError
) -> asyncpg.Pool:
    """A connection pool on `dsn`, or `error` saying in one line why there is none."""
    try:
        return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
    except (OSError, asyncpg.PostgresError) as e:
        raise error(f"cannot connect to PostgreSQL: {e}") from e


async def open_pool(
    dsn: str, max_size: int, component: str, version: int, ddl: str
) -> asyncpg.Pool:
    """`connect_pool`, with `component`'s schema ensured; nothing is left open on failure."""
    pool = await connect_pool(dsn, max_size)
    try:
        async with pool.acquire() as connection, connection.transaction():
            await ensure_schema(connection, component, version, ddl)
    except BaseException:
        await pool.close()
        raise
    return pool


async def schema_versions(connection: Connection) -> dict[str, int]:
    """Each component's recorded schema version."""
    await connection.execute(_TABLE)
    rows = await connection.fetch("SELECT component, version FROM eventgate_schema ORDER BY 1")
    return {row["component"]: row["version"] for row in rows}


_KEYS = """
CREATE TABLE IF NOT EXISTS eventgate_keys (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);
"""


async def shared_key(dsn: str, name: str, size: int, seed: bytes | None = None) -> bytes:
    """The secret `name` that every process on this database shares, made once: `seed` if
    given (a key the deployment already used), else random."""
    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as e:
        raise ConfigError(f"cannot connect to PostgreSQL: {e}") from e
    try:
        async with connection.transaction():
            await ensure_schema(connection, "keys", 1, _KEYS)
            await connection.execute(
                "INSERT INTO eventgate_keys (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                name,
                seed if seed is not None and len(seed) == size else secrets.token_bytes(size),
            )
            key: bytes = await connection.fetchval(
                "SELECT value FROM eventgate_keys WHERE name = $1", name
            )
    finally:
        await connection.close()
    if len(key) != size:
        raise ConfigError(f"the database's {name} key is not {size} bytes")
    return key
