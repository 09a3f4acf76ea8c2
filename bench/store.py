"""Event store benchmark: our appends against raw sqlite3 on the same durable settings,
replay speed, and the upsert service following live appends; with --database-url, the
appends and replay against PostgreSQL (asyncpg), in a fresh database created and dropped
on that server.
Usage: python bench/store.py [--json] [--quick] [--database-url postgresql://...]"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import uvloop

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.eventstore import NO_STREAM, NewEvent, SQLiteEventStore
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.postgres import PostgresEventStore
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    InventoryItem,
    InventoryItemCreated,
    ItemsCheckedInToInventory,
)
from eventgate.examples.inventory.read_models import item_details

PAYLOAD = {"name": "x" * 150, "count": 12345, "note": "benchmark"}  # ~200 bytes stored


def event() -> NewEvent:
    return NewEvent("Benchmarked", PAYLOAD, {"correlationId": "bench"})


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def timed(work: Callable[[], Awaitable[int]]) -> float:
    started = time.perf_counter()
    count = await work()
    return count / (time.perf_counter() - started)


async def append_single(directory: Path, count: int) -> float:
    store = await SQLiteEventStore.open(directory / "single.sqlite")

    async def work() -> int:
        for n in range(count):
            await store.append(f"s-{n}", [event()], expected_version=NO_STREAM)
        return count

    try:
        return await timed(work)
    finally:
        await store.close()


async def append_concurrent(directory: Path, count: int, writers: int = 64) -> float:
    store = await SQLiteEventStore.open(directory / "concurrent.sqlite")

    async def writer(w: int) -> None:
        for n in range(count // writers):
            await store.append(f"s-{w}-{n}", [event()], expected_version=NO_STREAM)

    async def work() -> int:
        await asyncio.gather(*(writer(w) for w in range(writers)))
        return count // writers * writers

    try:
        return await timed(work)
    finally:
        await store.close()


def raw(directory: Path, count: int, per_transaction: int, writers: int = 64) -> float:
    """The same rows our concurrent benchmark stores (ids, streams, JSON), in plain INSERTs."""
    connection = sqlite3.connect(directory / f"raw-{per_transaction}.sqlite", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, event_id TEXT UNIQUE, stream_id TEXT,"
        " stream_version INTEGER, type TEXT, schema_version INTEGER, time TEXT, data TEXT,"
        " metadata TEXT, UNIQUE (stream_id, stream_version))"
    )
    streams = [f"s-{w}-{n}" for n in range(count // writers + 1) for w in range(writers)]
    stamp = datetime.now(UTC).isoformat()
    rows = [
        (e.id, streams[n], stamp, orjson.dumps(e.data).decode(), orjson.dumps(e.metadata).decode())
        for n, e in enumerate(event() for _ in range(count))
    ]  # built before the clock starts: only SQLite is timed
    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO events (event_id, stream_id, stream_version, type, schema_version, time,"
            " data, metadata) VALUES (?, ?, 1, 'Benchmarked', 1, ?, ?, ?)",
            rows[first : first + per_transaction],
        )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


async def replay_and_rebuild(directory: Path, items: int, moves: int) -> tuple[float, float, int]:
    """Seed an inventory log, then rebuild every aggregate and the item details read model."""
    system = await open_system(Settings(data_dir=directory / "replay"), inventory_app())
    codec = EventCodec(system.app.events)
    try:
        for n in range(items):
            created = codec.encode(InventoryItemCreated(f"i-{n}", f"item {n}"))
            moved = [
                codec.encode(ItemsCheckedInToInventory(f"i-{n}", 1 + k % 9)) for k in range(moves)
            ]
            await system.store.append(f"i-{n}", [created, *moved], expected_version=NO_STREAM)
        total = items * (moves + 1)

        async def replay() -> int:
            aggregates: dict[str, InventoryItem] = {}
            after = 0
            while page := await system.store.read_all(after, 5000):
                for recorded in page:
                    item = aggregates.get(recorded.stream_id) or InventoryItem(recorded.stream_id)
                    item.apply(codec.decode(recorded))
                    item.version = recorded.stream_version
                    aggregates[recorded.stream_id] = item
                after = page[-1].position
            return sum(item.version for item in aggregates.values())

        async def rebuild() -> int:
            await system.upsert.rebuild(item_details)
            return total

        return await timed(replay), await timed(rebuild), total
    finally:
        await system.close()


async def projection_live(
    directory: Path, count: int, writers: int = 64, per_stream: int = 10
) -> float:
    """Events/s from the first append until both inventory read models have committed the
    last event, while `writers` appenders append one event per append (an item created,
    then checked in nine times, on many streams) and the upsert service follows the log.
    The domain events are encoded before the clock starts; each append makes its NewEvent
    (and so its time-ordered id) as a command handler does, just before appending."""
    system = await open_system(Settings(data_dir=directory / "live"), inventory_app())
    codec = EventCodec(system.app.events)

    def planned(w: int) -> list[tuple[str, NewEvent, int]]:
        appends = []
        for s in range(count // writers // per_stream):
            stream = f"i-{w}-{s}"
            created = codec.encode(InventoryItemCreated(stream, f"item {w} {s}"))
            appends.append((stream, created, NO_STREAM))
            for version in range(1, per_stream):
                moved = codec.encode(ItemsCheckedInToInventory(stream, 1 + version % 9))
                appends.append((stream, moved, version))
        return appends

    async def writer(appends: list[tuple[str, NewEvent, int]]) -> None:
        for stream, encoded, expected in appends:
            event = NewEvent(encoded.type, encoded.data, encoded.metadata, encoded.schema_version)
            await system.store.append(stream, [event], expected_version=expected)

    plans = [planned(w) for w in range(writers)]
    following = asyncio.create_task(system.upsert.run(), name="upsert")
    try:
        await asyncio.sleep(0.5)  # the service has started following an empty log
        started = time.perf_counter()
        await asyncio.gather(*(writer(plan) for plan in plans))
        head = await system.store.head()
        async with asyncio.timeout(120):
            for projection in system.upsert.projections:
                await system.feed.wait_for(projection.name, head)
        return head / (time.perf_counter() - started)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await system.close()


# -- PostgreSQL ---------------------------------------------------------------------------


async def pg_fresh(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A new database on the server of `url`, and the coroutine that drops it."""
    name = f"eventgate_bench_{os.getpid()}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    return url.rsplit("/", 1)[0] + f"/{name}", drop


async def pg_append(url: str, count: int, writers: int, prefix: str = "s") -> int:
    store = await PostgresEventStore.open(url)

    async def writer(w: int) -> None:
        for n in range(count // writers):
            await store.append(f"{prefix}-{w}-{n}", [event()], expected_version=NO_STREAM)

    try:
        await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        await store.close()
    return count // writers * writers


async def pg_append_processes(url: str, count: int, processes: int) -> float:
    """`processes` processes of 16 appenders each, started before the clock."""
    per = count // processes
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--pg-worker", url, str(per), f"p{n}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        for n in range(processes)
    ]  # fmt: skip
    for child in children:  # each says "ready" once connected
        assert child.stdout is not None
        await child.stdout.readline()
    started = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    codes = [await child.wait() for child in children]
    elapsed = time.perf_counter() - started
    if any(codes):
        raise RuntimeError(f"a PostgreSQL writer process failed: {codes}")
    return per * processes / elapsed


async def pg_worker(url: str, count: int, prefix: str) -> None:
    store = await PostgresEventStore.open(url)
    await store.close()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await pg_append(url, count, 16, prefix)


async def pg_raw(url: str, count: int, per_transaction: int = 100) -> float:
    """asyncpg executemany of the same rows, `per_transaction` per transaction."""
    connection = await asyncpg.connect(url)
    await connection.execute(
        "CREATE TABLE raw_events (position bigserial PRIMARY KEY, event_id text UNIQUE,"
        " stream_id text, stream_version integer, type text, schema_version integer,"
        " time timestamptz, data json, metadata json, UNIQUE (stream_id, stream_version))"
    )
    stamp = datetime.now(UTC)
    rows = [
        (e.id, f"s-{n}", stamp, orjson.dumps(e.data).decode(), orjson.dumps(e.metadata).decode())
        for n, e in enumerate(event() for _ in range(count))
    ]
    started = time.perf_counter()
    for first in range(0, count, per_transaction):
        async with connection.transaction():
            await connection.executemany(
                "INSERT INTO raw_events (event_id, stream_id, stream_version, type,"
                " schema_version, time, data, metadata)"
                " VALUES ($1, $2, 1, 'Benchmarked', 1, $3, $4::json, $5::json)",
                rows[first : first + per_transaction],
            )
    elapsed = time.perf_counter() - started
    await connection.close()
    return count / elapsed


async def pg_replay(url: str) -> float:
    store = await PostgresEventStore.open(url)

    async def work() -> int:
        after, total = 0, 0
        while page := await store.read_all(after, 5000):
            total += len(page)
            after = page[-1].position
        return total

    try:
        return await timed(work)
    finally:
        await store.close()


async def run_postgres(url: str, scale: float) -> dict[str, object]:
    database, drop = await pg_fresh(url)
    results: dict[str, object] = {}
    try:
        say("PostgreSQL: appending, one coroutine ...")
        results["pg_append_single_eps"] = await timed(
            lambda: pg_append(database, int(2000 * scale), 1, "single")
        )
        say("PostgreSQL: appending, 64 concurrent appenders ...")
        results["pg_append_concurrent_eps"] = await timed(
            lambda: pg_append(database, int(20000 * scale), 64, "concurrent")
        )
        say("PostgreSQL: appending, 4 processes of 16 appenders ...")
        results["pg_append_concurrent_4proc_eps"] = await pg_append_processes(
            database, int(20000 * scale), 4
        )
        say("PostgreSQL: raw asyncpg executemany, 100 events per transaction ...")
        results["pg_raw_batched_eps"] = await pg_raw(database, int(50000 * scale))
        say("PostgreSQL: replaying the whole log ...")
        results["pg_replay_eps"] = await pg_replay(database)
    finally:
        await drop()
    return results


async def run(quick: bool, database_url: str | None = None) -> dict[str, object]:
    scale = 0.2 if quick else 1.0
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as name:
        directory = Path(name)
        results: dict[str, object] = {}
        say("appending, one coroutine ...")
        results["append_single_eps"] = await append_single(directory, int(2000 * scale))
        say("appending, 64 concurrent appenders ...")
        results["append_concurrent_eps"] = await append_concurrent(directory, int(40000 * scale))
        say("raw sqlite3, one event per transaction ...")
        results["raw_single_eps"] = raw(directory, int(2000 * scale), 1)
        say("raw sqlite3, 100 events per transaction ...")
        results["raw_batched_eps"] = raw(directory, int(100000 * scale), 100)
        say("seeding an inventory log, then replaying and rebuilding it ...")
        replay, rebuild, total = await replay_and_rebuild(directory, int(2000 * scale), 49)
        results["replay_eps"] = replay
        results["rebuild_eps"] = rebuild
        results["replay_events"] = total
        say("appending inventory events with the upsert service following live ...")
        results["projection_live_eps"] = await projection_live(directory, int(40000 * scale))
    if database_url:
        results.update(await run_postgres(database_url, scale))
    results = {k: round(v) if isinstance(v, float) else v for k, v in results.items()}
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, uvloop"
    )
    results["date"] = time.strftime("%Y-%m-%d")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    parser.add_argument("--quick", action="store_true", help="a fifth of the work, for a smoke run")
    parser.add_argument("--database-url", help="also measure PostgreSQL on this server")
    parser.add_argument("--pg-worker", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.pg_worker:
        url, count, prefix = options.pg_worker
        uvloop.run(pg_worker(url, int(count), prefix))
        return
    results = uvloop.run(run(options.quick, options.database_url))  # the loop `up` runs on
    for key, value in results.items():
        print(f"{key:>24}  {value:,}" if isinstance(value, int) else f"{key:>24}  {value}")
    ratio = results["append_concurrent_eps"] / results["raw_batched_eps"]  # type: ignore[operator]
    print(f"{'concurrent / raw batched':>24}  {ratio:.2f} (target >= 0.6)")
    if "projection_live_eps" in results:
        print(f"{'live projections':>24}  {results['projection_live_eps']:,} (target >= 20,000)")
    if "pg_raw_batched_eps" in results:
        pg = results["pg_append_concurrent_eps"] / results["pg_raw_batched_eps"]  # type: ignore[operator]
        print(f"{'pg concurrent / raw':>24}  {pg:.2f} (target >= 0.5)")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
