"""Event store benchmark: our appends against raw sqlite3 on the same durable settings,
and replay speed. Usage: python bench/store.py [--json] [--quick]"""

from __future__ import annotations

import argparse
import asyncio
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

import orjson
import uvloop

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.eventstore import NO_STREAM, NewEvent, SQLiteEventStore
from eventgate.eventstore.codec import EventCodec
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


async def run(quick: bool) -> dict[str, object]:
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
    options = parser.parse_args()
    results = uvloop.run(run(options.quick))  # the loop `eventgate up` runs on
    for key, value in results.items():
        print(f"{key:>24}  {value:,}" if isinstance(value, int) else f"{key:>24}  {value}")
    ratio = results["append_concurrent_eps"] / results["raw_batched_eps"]  # type: ignore[operator]
    print(f"{'concurrent / raw batched':>24}  {ratio:.2f} (target >= 0.5)")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
