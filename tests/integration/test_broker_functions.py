"""Functions consuming from a real NATS JetStream: order per stream through retries, nak with
backoff, dead letters and their replay, and the partitions shared through the broker."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate import Context, DeadLetter, FunctionEvent, function
from eventgate.bootstrap import System, function_worker, open_broker_of, open_system
from eventgate.broker.connection import Broker
from eventgate.broker.consumer import JetStreamRunner, _Held, consumer_lag
from eventgate.broker.leases import BrokerLeases
from eventgate.broker.relay import Relay
from eventgate.config import Settings
from eventgate.eventstore import NewEvent
from eventgate.examples.inventory import inventory_app
from eventgate.functions.context import Services
from eventgate.functions.runner import partition_of
from tests.conftest import installed
from tests.nats import NatsServer, nats_binary

STREAMS = 9


class Calls:
    """What the test function saw: every attempt, and the successes in the order they ran."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[int]] = defaultdict(list)
        self.done: list[tuple[str, int]] = []
        self.heal: set[str] = set()


@pytest.fixture
async def system(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[System]:
    app = dataclasses.replace(inventory_app(), name=f"f{uuid.uuid4().hex[:8]}", functions=[])
    settings = Settings(data_dir=tmp_path / "data", broker_url=nats_server.url)
    system = await open_system(settings, app)
    yield system
    await system.close()


def recorder(calls: Calls, name: str = "record") -> object:
    @function(on=["Work"], name=name, retries=2, backoff=0.05, max_backoff=0.2, concurrency=4)
    async def record(event: FunctionEvent, ctx: Context) -> None:
        calls.attempts[event.id].append(ctx.attempt)
        fails = int(event.data.get("fail", 0))
        if event.data.get("dead") and event.id not in calls.heal:
            raise DeadLetter("refused on purpose")
        if ctx.attempt <= fails and event.id not in calls.heal:
            raise RuntimeError(f"failing attempt {ctx.attempt} of {fails}")
        await asyncio.sleep(0.001)
        calls.done.append((event.stream_id, event.stream_version))

    return record


async def running(system: System, broker: Broker, calls: Calls) -> list[asyncio.Task[None]]:
    worker = function_worker(system, [recorder(calls)], broker=broker, heartbeat=0.2, ttl=1.0)  # type: ignore[list-item]
    relay = Relay(system.store, broker, batch_size=50)
    return [asyncio.create_task(relay.run()), asyncio.create_task(worker.run())]


async def until(check: object) -> None:
    deadline = time.monotonic() + 30
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_every_event_runs_once_in_stream_order_through_retries_and_dead_letters(
    system: System,
) -> None:
    broker = await open_broker_of(system, "test")
    calls = Calls()
    tasks = await running(system, broker, calls)
    stored = []
    for n in range(180):
        data: dict[str, object] = {"n": n}
        if n % 17 == 3:
            data["fail"] = 2  # two failed attempts, then success: nak'd twice with backoff
        if n == 50:
            data["dead"] = True
        stored += await system.store.append(f"s-{n % STREAMS}", [NewEvent("Work", data)])
        await system.store.append(f"s-{n % STREAMS}", [NewEvent("Other", {})])  # not wanted
    await until(lambda: len(calls.done) == 179)

    # each stream's events succeeded in order, once each, with nothing skipped
    for s in range(STREAMS):
        versions = [v for stream, v in calls.done if stream == f"s-{s}"]
        wanted = [e.stream_version for e in stored if e.stream_id == f"s-{s}" and e.data["n"] != 50]
        assert versions == wanted
    retried = [e for e in stored if e.data.get("fail")]
    assert all(calls.attempts[e.id] == [1, 2, 3] for e in retried)  # attempt = deliveries
    [letter] = await system.functions.dead_letters("record")
    assert letter.event.data["n"] == 50 and letter.error_type == "DeadLetter"
    assert letter.attempts == 1
    assert await consumer_lag(broker, "record", broker.layout.partitions) == 0

    # a replay runs the dead letter again, through the same dlq commands as without a broker
    calls.heal.add(letter.event.id)
    assert await system.functions.request_replay(letter.id) == 1
    await until(lambda: len(calls.done) == 180)
    assert calls.done[-1] == (letter.event.stream_id, letter.event.stream_version)
    for _ in range(100):
        if not await system.functions.dead_letters("record"):
            break
        await asyncio.sleep(0.05)
    assert await system.functions.dead_letters("record") == []
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await broker.close()


async def test_a_broker_failure_between_attempts_keeps_the_streams_order(
    system: System,
) -> None:
    """The count of a failed attempt cannot be written once (a broker blip): the lane keeps
    its events and tries again; the stream's later events still wait behind the retry."""
    broker = await open_broker_of(system, "test")
    calls = Calls()
    worker = function_worker(system, [recorder(calls)], broker=broker, heartbeat=0.2, ttl=1.0)  # type: ignore[list-item]
    runner = worker.runners[0]
    count, failures = runner._attempts.count, [TimeoutError("nats: timeout")]  # type: ignore[attr-defined]

    async def flaky(event_id: str, failed: int) -> None:
        if failures:
            raise failures.pop()
        await count(event_id, failed)

    runner._attempts.count = flaky  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(Relay(system.store, broker).run()),
             asyncio.create_task(worker.run())]  # fmt: skip
    [first] = await system.store.append("s", [NewEvent("Work", {"fail": 1})])
    await system.store.append("s", [NewEvent("Work", {})])
    await asyncio.sleep(0.5)
    await system.store.append("s", [NewEvent("Work", {})])
    await until(lambda: len(calls.done) == 3)
    assert calls.done == [("s", 1), ("s", 2), ("s", 3)]
    assert calls.attempts[first.id] == [1, 2] and not failures
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await broker.close()


async def test_a_worker_outlives_a_broker_outage(tmp_path: Path) -> None:
    """The broker away for longer than the lease TTL: the worker stops its partitions,
    keeps trying, and runs the events appended meanwhile once the broker is back."""
    server = NatsServer(installed(nats_binary(), "nats-server")).start()
    app = dataclasses.replace(inventory_app(), name="outage", functions=[])
    settings = Settings(data_dir=tmp_path / "data", broker_url=server.url)
    system = await open_system(settings, app)
    try:
        broker = await open_broker_of(system, "test")
        calls = Calls()
        worker = function_worker(system, [recorder(calls)], broker=broker, heartbeat=0.2, ttl=1.0)  # type: ignore[list-item]
        tasks = [asyncio.create_task(Relay(system.store, broker).run()),
                 asyncio.create_task(worker.run())]  # fmt: skip
        await system.store.append("s", [NewEvent("Work", {})])
        await until(lambda: len(calls.done) == 1)
        server.stop()
        await system.store.append("s", [NewEvent("Work", {})])
        await asyncio.sleep(6.0)  # six TTLs without the broker
        assert not tasks[1].done() and worker.owned == frozenset()
        server.start()
        await until(lambda: len(calls.done) == 2)
        assert calls.done == [("s", 1), ("s", 2)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.close()
    finally:
        await system.close()
        server.remove()


async def test_a_worker_that_leaves_hands_its_partitions_over_at_once(system: System) -> None:
    broker = await open_broker_of(system, "test")
    first, second = BrokerLeases(broker, 4), BrokerLeases(broker, 4)
    assert (await first.rebalance("w1", 5.0)).owned == {0, 1, 2, 3}
    await first.leave("w1")
    assert (await second.rebalance("w2", 5.0)).owned == {0, 1, 2, 3}
    await broker.close()


async def test_two_replays_in_one_lane_and_the_streams_next_event_all_stay(
    system: System, tmp_path: Path
) -> None:
    """Replays sort after what their lane holds, each its own key: a message that arrives
    later neither replaces nor overtakes them."""
    broker = await open_broker_of(system, "test")
    calls = Calls()
    services = Services(system.store, system.commands, system.functions, tmp_path)
    runner = JetStreamRunner(recorder(calls), services, "w", 16, broker=broker)  # type: ignore[arg-type]
    event, *parked = await system.store.append("s", [NewEvent("Work", {}) for _ in range(3)])
    p = partition_of("s", 16)
    runner._settled[p] = asyncio.Event()  # never set: the lane holds, runs nothing
    runner._fetchers[p] = asyncio.create_task(asyncio.sleep(3600))
    for letter in parked:
        await system.functions.dead_letter("record", p, letter, ("E", "x"), 1, letter.time)
    assert await system.functions.request_replay(function="record") == 2
    runner._hold(p, _Held((5, 0), event, object()))  # type: ignore[arg-type]
    await runner._poll_replays()
    runner._hold(p, _Held((6, 0), event, object()))  # type: ignore[arg-type]
    lane = runner._lanes["s"]
    assert lane.keys == [(5, 0), (5, 1), (5, 2), (6, 0)]
    assert [lane.held[k].letter is not None for k in lane.keys] == [False, True, True, False]
    await runner._drop(frozenset({p}))
    await broker.close()
