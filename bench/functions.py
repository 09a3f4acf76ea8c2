"""Functions benchmark: events/s through a no-op function and through one that burns 0.5 ms
of CPU per event, each with 1 and 2 worker processes, and latency from append to invocation at
a steady 1,000 events/s (the function in the appending process, as in `eventgate up`).
Usage: python bench/functions.py [--json] [--quick]"""

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
NOOP = ("bench.apps.noop_functions", "noop")  # (module, function name)
CPU = ("bench.apps.cpu_functions", "burn")  # 0.5 ms of CPU per event


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


def start_workers(data: Path, workers: int, config: Path, module: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "serve", "functions", "--workers", str(workers),
         "--data", str(data), "--functions", module, "--config", str(config)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def leases(data: Path) -> list[int]:
    """Partitions leased per worker; none while the workers are still creating the file."""
    if not (data / "functions.sqlite").exists():
        return []
    with sqlite3.connect(data / "functions.sqlite", timeout=30) as db:
        try:
            rows = db.execute("SELECT COUNT(*) FROM leases GROUP BY owner").fetchall()
        except sqlite3.OperationalError:  # no such table yet
            rows = []
    db.close()
    return sorted(n for (n,) in rows)


def least_checkpoint(data: Path, name: str) -> int:
    with sqlite3.connect(data / "functions.sqlite", timeout=30) as db:
        row = db.execute(
            "SELECT COUNT(*), COALESCE(MIN(position), 0) FROM checkpoints WHERE function = ?",
            (name,),
        ).fetchone()
    db.close()
    return int(row[1]) if row[0] == 16 else 0


async def workers_eps(
    directory: Path, workers: int, count: int, fn: tuple[str, str] = NOOP
) -> float:
    """Start N workers running `fn` on an empty store, wait until they split the partitions,
    append `count` events at once and time until every checkpoint has passed them all."""
    module, name = fn
    data = directory / f"{name}-workers-{workers}"
    data.mkdir()
    store = await SQLiteEventStore.open(data / "events.sqlite")
    serve = start_workers(data, workers, directory / "bench.toml", module)
    try:
        fair = [16 // workers] * workers
        await wait_until(lambda: serve.poll() is not None or leases(data) == fair)
        if serve.returncode is not None:
            raise RuntimeError(f"serve functions --workers {workers} exited at start")
        started = time.perf_counter()
        for first in range(0, count, 500):
            await asyncio.gather(
                *(
                    store.append(f"s-{n % STREAMS}", [bench_event()])
                    for n in range(first, min(count, first + 500))
                )
            )
        head = await store.head()
        await wait_until(lambda: least_checkpoint(data, name) >= head, 0.01)
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
    cpu_count = 1_000 if quick else 8_000  # ~4 s with one worker at 0.5 ms per event
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "bench.toml").write_text("app_functions = false\n")
        say(f"no-op function, 1 worker process, {count:,} events ...")
        one = await workers_eps(directory, 1, count)
        say(f"no-op function, 2 worker processes, {count:,} events ...")
        two = await workers_eps(directory, 2, count)
        say(f"0.5 ms CPU function, 1 worker process, {cpu_count:,} events ...")
        cpu_one = await workers_eps(directory, 1, cpu_count, CPU)
        say(f"0.5 ms CPU function, 2 worker processes, {cpu_count:,} events ...")
        cpu_two = await workers_eps(directory, 2, cpu_count, CPU)
        say(f"append -> invocation latency at {RATE:,} events/s ...")
        delays = await latency(directory, 3 if quick else 10)
    return {
        "noop_eps": round(one),
        "noop_eps_2_workers": round(two),
        "cpu_fn_eps": round(cpu_one),
        "cpu_fn_eps_2_workers": round(cpu_two),
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
    print(f"{'2-worker targets':>24}  cpu_fn >= 1.6 x 1 worker; no-op no slower than 1 worker")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
