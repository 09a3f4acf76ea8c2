"""A function runner decodes only its own partitions' events of the types it wants, and its
checkpoints still move past everything it skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventgate.bootstrap import System
from eventgate.eventstore import NewEvent, SQLiteEventStore, Upcasters
from eventgate.functions import Context, FunctionEvent, function
from eventgate.functions.context import Services
from eventgate.functions.runner import FunctionRunner, partition_of

PARTITIONS = 16


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_runner_owning_partition_0_decodes_no_event_of_another_partition_or_type(
    system: System, tmp_path: Path
) -> None:
    decoded: list[str] = []

    def seen(data: dict[str, Any]) -> dict[str, Any]:  # runs once per decoded Thing
        decoded.append(data["stream"])
        return data

    upcasters = Upcasters()
    upcasters.register("Thing", 1, seen)
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite", upcasters=upcasters)
    invoked: list[tuple[str, int]] = []

    @function(on=["Thing"], concurrency=8)
    async def note(event: FunctionEvent, ctx: Context) -> None:
        invoked.append((event.stream_id, event.stream_version))

    streams = [f"s-{n}" for n in range(64)]
    ours = [s for s in streams if partition_of(s, PARTITIONS) == 0]
    assert ours and streams[-1] not in ours  # the log ends with events the runner skips
    for stream in streams:
        await store.append(stream, [NewEvent("Thing", {"stream": stream}) for _ in range(2)])
    await store.append(ours[0], [NewEvent("Ignored", {"stream": ours[0]})])
    await store.append(streams[-1], [NewEvent("Thing", {"stream": streams[-1]})])
    head = await store.head()

    services = Services(store, system.commands, system.functions, tmp_path)
    await system.functions.register([note])
    await system.functions.rebalance("w", 30)  # alone: it leases every partition
    runner = FunctionRunner(note, services, "w", PARTITIONS, commit_interval=0.05)
    try:
        await runner.assign(frozenset({0}))
        await until(lambda: len(invoked) == 2 * len(ours))
        await runner.commit()
        checkpoints = await system.functions.load_checkpoints("note")
    finally:
        await runner.stop()
        await store.close()
    assert sorted(invoked) == sorted((s, v) for s in ours for v in (1, 2))
    assert sorted(decoded) == sorted(ours * 2)  # each of ours once, nothing else
    assert checkpoints[0] == head
    assert all(checkpoints[p] == 0 for p in range(1, PARTITIONS))


async def test_two_runners_on_half_the_partitions_each_run_every_event_once_in_order(
    system: System, tmp_path: Path
) -> None:
    invoked: dict[str, list[int]] = {}

    @function(on=["Thing"], concurrency=8)
    async def note(event: FunctionEvent, ctx: Context) -> None:
        invoked.setdefault(event.stream_id, []).append(event.stream_version)
        await asyncio.sleep(0)

    services = Services(system.store, system.commands, system.functions, tmp_path)
    await system.functions.register([note])
    await system.functions.rebalance("w", 30)
    runners = [FunctionRunner(note, services, "w", PARTITIONS) for _ in range(2)]
    try:
        await runners[0].assign(frozenset(range(8)))
        await runners[1].assign(frozenset(range(8, 16)))
        for n in range(300):
            await system.store.append(f"s-{n % 40}", [NewEvent("Thing", {"n": n})])
        await until(lambda: sum(map(len, invoked.values())) >= 300)
        await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(runner.stop() for runner in runners))
    assert invoked == {f"s-{s}": list(range(1, 300 // 40 + (s < 300 % 40) + 1)) for s in range(40)}
    checkpoints = await system.functions.load_checkpoints("note")
    assert set(checkpoints.values()) == {await system.store.head()}
