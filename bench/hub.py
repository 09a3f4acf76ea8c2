"""Event hub on NATS JetStream: how fast the relay publishes the store's events, how fast a
function consumes them from JetStream, and the latency from append to a plain JetStream
subscriber and to a function fed by JetStream at a steady 1,000 events/s.
Starts its own nats-server (Debian package `nats-server`) on a free loopback port.
Usage: python bench/hub.py [--json] [--quick]"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import uvloop

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.nats import NatsServer, nats_binary

from eventgate.bootstrap import System, function_worker, open_broker_of, open_system
from eventgate.broker.consumer import consumer_lag
from eventgate.broker.relay import Relay
from eventgate.config import Settings
from eventgate.eventstore import NewEvent
from eventgate.examples.inventory import inventory_app
from eventgate.functions import Context, FunctionEvent, function

STREAMS = 1000
RATE = 1000  # events/s for the latency run
PAYLOAD = {"name": "x" * 150, "count": 12345}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def wait_until(check: Callable[[], bool], interval: float = 0.02) -> None:
    while True:
        if check():
            return
        await asyncio.sleep(interval)


async def open_bench_system(directory: Path, name: str, broker_url: str) -> System:
    app = dataclasses.replace(inventory_app(), name=name, functions=[])
    return await open_system(Settings(data_dir=directory / name, broker_url=broker_url), app)


async def fill(system: System, count: int) -> None:
    for n in range(0, count, 500):  # appends of 1 event, 500 at a time in flight
        await asyncio.gather(
            *(
                system.store.append(f"s-{(n + k) % STREAMS}", [NewEvent("Bench", PAYLOAD)])
                for k in range(min(500, count - n))
            )
        )


async def throughput(directory: Path, url: str, count: int) -> tuple[float, float]:
    """(relay events/s over `count` stored events, no-op function events/s from JetStream)."""
    system = await open_bench_system(directory, "throughput", url)
    broker = await open_broker_of(system, "bench")
    try:
        await fill(system, count)
        relay = Relay(system.store, broker)
        started = time.perf_counter()
        task = asyncio.create_task(relay.run())
        await wait_until(lambda: relay.position >= count)
        relay_eps = count / (time.perf_counter() - started)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

        done, first = 0, 0.0

        @function(on=["Bench"], concurrency=64, name="noop")
        async def noop(event: FunctionEvent, ctx: Context) -> None:
            nonlocal done, first
            first = first or time.perf_counter()
            done += 1

        worker = function_worker(system, [noop], broker=broker)
        task = asyncio.create_task(worker.run())
        await wait_until(lambda: done >= count)
        consume_eps = count / (time.perf_counter() - first)  # from the first invocation on
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await consumer_lag(broker, "noop", broker.layout.partitions) == 0
        return relay_eps, consume_eps
    finally:
        await broker.close()
        await system.close()


async def latency(directory: Path, url: str, seconds: float) -> tuple[list[float], list[float]]:
    """Append at RATE events/s for `seconds` with a relay, a plain JetStream subscriber and a
    function fed by JetStream running; each notes now - the event's stored time (ms)."""
    to_subscriber: list[float] = []
    to_function: list[float] = []

    @function(on=["Bench"], concurrency=64, name="measure")
    async def measure(event: FunctionEvent, ctx: Context) -> None:
        to_function.append((datetime.now(UTC) - event.time).total_seconds() * 1000)

    system = await open_bench_system(directory, "latency", url)
    broker = await open_broker_of(system, "bench")
    client = await nats.connect(url)

    async def received(message: nats.aio.msg.Msg) -> None:
        stored = datetime.fromisoformat(message.headers["ce-time"])  # type: ignore[index]
        to_subscriber.append((datetime.now(UTC) - stored).total_seconds() * 1000)

    subscription = await client.jetstream().subscribe(
        broker.layout.subjects, cb=received, ordered_consumer=True
    )
    worker = function_worker(system, [measure], broker=broker)
    tasks = [asyncio.create_task(Relay(system.store, broker).run()),
             asyncio.create_task(worker.run())]  # fmt: skip
    try:
        await wait_until(lambda: len(worker.owned) == 16)
        await asyncio.sleep(1.0)  # consumers created and fetching
        count, tick = int(RATE * seconds), 0.01  # 10 events every 10 ms
        started = time.perf_counter()
        for n in range(0, count, int(RATE * tick)):
            due = started + n / RATE
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            for k in range(int(RATE * tick)):
                asyncio.get_running_loop().create_task(
                    system.store.append(f"s-{(n + k) % STREAMS}", [NewEvent("Bench", PAYLOAD)])
                )
        await wait_until(lambda: len(to_function) >= count and len(to_subscriber) >= count)
        return to_subscriber, to_function
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await subscription.unsubscribe()
        await client.close()
        await broker.close()
        await system.close()


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000)[int(p * 10) - 1]


async def run(quick: bool) -> dict[str, object]:
    binary = nats_binary()
    if binary is None:
        raise SystemExit("bench/hub.py needs nats-server (apt-get install nats-server)")
    server = NatsServer(binary).start()
    count = 10_000 if quick else 100_000
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            say(f"relay and JetStream consumption of {count:,} stored events ...")
            relay_eps, consume_eps = await throughput(directory, server.url, count)
            say(f"append -> JetStream subscriber and -> function at {RATE:,} events/s ...")
            to_subscriber, to_function = await latency(directory, server.url, 3 if quick else 10)
    finally:
        server.remove()
    return {
        "relay_eps": round(relay_eps),
        "jetstream_consume_eps": round(consume_eps),
        "append_to_jetstream_p50_ms": round(percentile(to_subscriber, 50), 2),
        "append_to_jetstream_p99_ms": round(percentile(to_subscriber, 99), 2),
        "append_to_function_via_jetstream_p50_ms": round(percentile(to_function, 50), 2),
        "append_to_function_via_jetstream_p99_ms": round(percentile(to_function, 99), 2),
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
        print(f"{key:>40}  {value:,}" if isinstance(value, int) else f"{key:>40}  {value}")
    print(f"{'targets':>40}  relay >= 20,000 events/s; append -> function p99 < 50 ms")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
