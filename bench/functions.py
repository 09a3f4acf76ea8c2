"""Functions benchmark: events/s through a no-op function with 1 and 2 worker processes, and
latency from append to invocation at a steady 1,000 events/s (the function in the appending
process, as in `eventgate up`). Usage: python bench/functions.py [--json] [--quick]"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from eventgate.bootstrap import function_worker, open_system
from eventgate.config import Settings
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.examples.inventory import inventory_app
from eventgate.functions import Context, FunctionEvent, function

ROOT = Path(__file__).resolve().parents[1]
STREAMS = 1000
RATE = 1000  # events/s for the latency run
PAYLOAD = {"name": "x" * 150, "count": 12345}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_event() -> NewEvent:
    return NewEvent("Bench", PAYLOAD)


async def wait_until(check: Callable[[], bool], interval: float = 0.05) -> None:
    while True:
        if check():
            return
        await asyncio.sleep(interval)


# -- throughput through worker processes ------------------------------------------------


def start_workers(data: Path, workers: int, config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "serve", "functions", "--workers", str(workers),
         "--data", str(data), "--functions", "bench.apps.noop_functions", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def leases(data: Path) -> list[int]:
    with sqlite3.connect(data / "functions.sqlite", timeout=30) as db:
        rows = db.execute("SELECT COUNT(*) FROM leases GROUP BY owner").fetchall()
    db.close()
    return sorted(n for (n,) in rows)


def least_checkpoint(data: Path) -> int:
    with sqlite3.connect(data / "functions.sqlite", timeout=30) as db:
        row = db.execute(
            "SELECT COUNT(*), COALESCE(MIN(position), 0) FROM checkpoints WHERE function = 'noop'"
        ).fetchone()
    db.close()
    return int(row[1]) if row[0] == 16 else 0


async def workers_eps(directory: Path, workers: int, count: int) -> float:
    """Start N workers on an empty store, wait until they split the partitions, append
    `count` events at once and time until every checkpoint has passed them all."""
    data = directory / f"workers-{workers}"
    data.mkdir()
    store = await SQLiteEventStore.open(data / "events.sqlite")
    serve = start_workers(data, workers, directory / "bench.toml")
    try:
        fair = [16 // workers] * workers
        await wait_until(lambda: (data / "functions.sqlite").exists() and leases(data) == fair)
        started = time.perf_counter()
        for first in range(0, count, 500):
            await asyncio.gather(
                *(
                    store.append(f"s-{n % STREAMS}", [bench_event()])
                    for n in range(first, min(count, first + 500))
                )
            )
        head = await store.head()
        await wait_until(lambda: least_checkpoint(data) >= head, 0.01)
        return count / (time.perf_counter() - started)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        await store.close()


# -- latency in process -----------------------------------------------------------------


async def latency(directory: Path, seconds: float) -> list[float]:
    """Append at RATE events/s for `seconds`; each invocation notes now - event time."""
    delays: list[float] = []

    @function(on=["Bench"], concurrency=64, name="noop")
    async def measure(event: FunctionEvent, ctx: Context) -> None:
        delays.append((datetime.now(UTC) - event.time).total_seconds() * 1000)

    system = await open_system(Settings(data_dir=directory / "latency"), inventory_app())
    worker = function_worker(system, [measure])
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: len(worker.owned) == 16)
        count, tick = int(RATE * seconds), 0.01  # 10 events every 10 ms
        started = time.perf_counter()
        for n in range(0, count, int(RATE * tick)):
            due = started + n / RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            for k in range(int(RATE * tick)):
                asyncio.get_running_loop().create_task(
                    system.store.append(f"s-{(n + k) % STREAMS}", [bench_event()])
                )
        await wait_until(lambda: len(delays) >= count)
        return delays
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await system.close()


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000)[int(p * 10) - 1]


async def run(quick: bool) -> dict[str, object]:
    count = 5_000 if quick else 30_000
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "bench.toml").write_text("app_functions = false\n")
        say(f"no-op function, 1 worker process, {count:,} events ...")
        one = await workers_eps(directory, 1, count)
        say(f"no-op function, 2 worker processes, {count:,} events ...")
        two = await workers_eps(directory, 2, count)
        say(f"append -> invocation latency at {RATE:,} events/s ...")
        delays = await latency(directory, 3 if quick else 10)
    return {
        "noop_eps": round(one),
        "noop_eps_2_workers": round(two),
        "append_to_invoke_p50_ms": round(percentile(delays, 50), 2),
        "append_to_invoke_p99_ms": round(percentile(delays, 99), 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus,"
        f" Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    parser.add_argument("--quick", action="store_true", help="less work, for a smoke run")
    options = parser.parse_args()
    results = uvloop.run(run(options.quick))
    for key, value in results.items():
        print(f"{key:>24}  {value:,}" if isinstance(value, int) else f"{key:>24}  {value}")
    print(f"{'p99 target':>24}  < 50 ms at {RATE:,} events/s")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
