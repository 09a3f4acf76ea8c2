"""Functions against the real SQLite files: retries, dead letters, replay, order, timeouts,
backpressure, explicit outcomes, the idempotency helper, competing workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from eventgate.bootstrap import System, function_worker
from eventgate.errors import ConfigError, DeadLetterNotFound
from eventgate.eventstore.model import NewEvent
from eventgate.examples.inventory.domain import CreateInventoryItem
from eventgate.functions import Context, DeadLetter, Function, FunctionEvent, Retry, function
from eventgate.functions.config import load_functions_config
from eventgate.functions.loader import load_functions
from eventgate.functions.runner import FunctionRunner
from eventgate.functions.worker import FunctionWorker

FAST = {"backoff": 0.01, "max_backoff": 0.05}


@contextlib.asynccontextmanager
async def running(
    system: System, functions: Sequence[Function], **options: Any
) -> AsyncIterator[FunctionWorker]:
    worker = function_worker(system, functions, heartbeat=0.1, ttl=2.0, **options)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def append(system: System, stream: str, type_name: str = "Thing", **data: Any) -> None:
    await system.store.append(stream, [NewEvent(type_name, data)])


async def test_a_failing_event_is_retried_until_it_succeeds(system: System) -> None:
    attempts: list[int] = []

    @function(on=["Thing"], retries=3, **FAST)
    async def flaky(event: FunctionEvent, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("not yet")

    async with running(system, [flaky]):
        await append(system, "s-1")
        await until(lambda: attempts == [1, 2, 3])
        await asyncio.sleep(0.1)
    assert attempts == [1, 2, 3]
    assert await system.functions.dead_letters() == []
    [status] = await system.functions.status()
    assert (status.invocations, status.failures, status.checkpoint) == (3, 2, 1)


async def test_a_dead_letter_the_store_refuses_for_a_while_is_written_once_it_takes_it(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function store away just when an event is dead-lettered: the lane waits and
    tries again (it died before, leaving the event unfinished and the stream stuck)."""
    real, refused = system.functions.dead_letter, []

    async def away_twice(*args: Any) -> None:
        if len(refused) < 2:
            refused.append(args[2].id)
            raise ConnectionRefusedError(111, "Connection refused")
        await real(*args)

    monkeypatch.setattr(system.functions, "dead_letter", away_twice)

    @function(on=["Thing"], retries=0, **FAST)
    async def refuses(event: FunctionEvent, ctx: Context) -> None:
        raise ValueError("no")

    async with running(system, [refuses]):
        await append(system, "s-1")
        await append(system, "s-1")  # behind the first in its stream's lane

        async def both_parked() -> bool:
            return len(await system.functions.dead_letters()) == 2

        await until(both_parked, within=15)
        await asyncio.sleep(0.3)  # a checkpoint save
    assert len(refused) == 2
    [status] = await system.functions.status()
    assert status.checkpoint == 2


async def test_exhausted_retries_dead_letter_the_event_and_a_replay_runs_it_again(
    system: System,
) -> None:
    fixed, ran = False, []

    @function(on=["Thing"], retries=2, **FAST)
    async def fragile(event: FunctionEvent, ctx: Context) -> None:
        if not fixed:
            raise ValueError(f"cannot handle n={event.data['n']}")
        ran.append(event.data["n"])

    async with running(system, [fragile]):
        await append(system, "s-1", n=1)
        await until(system.functions.dead_letters)
        [letter] = await system.functions.dead_letters()
        assert (letter.function, letter.event.data, letter.attempts) == ("fragile", {"n": 1}, 3)
        assert (letter.error_type, letter.error_message) == ("ValueError", "cannot handle n=1")
        assert letter.first_failure <= letter.last_failure and letter.status == "dead"
        await until(lambda: _checkpoint_is(system, "fragile", 1))  # the stream moved on

        fixed = True  # the fault is fixed; an operator replays
        assert await system.functions.request_replay(letter_id=letter.id) == 1
        started = time.monotonic()
        await until(lambda: ran == [1], within=3)
        assert time.monotonic() - started < 1.5  # picked up within the replay interval
        await until(lambda: _no_letters(system))
    with pytest.raises(DeadLetterNotFound):
        await system.functions.dead_letter_by_id(letter.id)


async def _checkpoint_is(system: System, name: str, position: int) -> bool:
    return set((await system.functions.load_checkpoints(name)).values()) == {position}


async def _no_letters(system: System) -> bool:
    return await system.functions.dead_letters() == []


async def test_retry_asks_for_a_later_attempt_and_dead_letter_parks_at_once(
    system: System,
) -> None:
    seen: list[tuple[str, int, float]] = []

    @function(on=["Thing"], retries=5, **FAST)
    async def explicit(event: FunctionEvent, ctx: Context) -> None:
        seen.append((event.stream_id, ctx.attempt, time.monotonic()))
        if event.stream_id == "later" and ctx.attempt == 1:
            raise Retry(delay=0.3)
        if event.stream_id == "never":
            raise DeadLetter("customer unknown")

    async with running(system, [explicit]):
        await append(system, "later")
        await append(system, "never")
        await until(lambda: len(seen) == 3)
        await until(system.functions.dead_letters)
    later = [s for s in seen if s[0] == "later"]
    assert [a for _, a, _ in later] == [1, 2] and later[1][2] - later[0][2] >= 0.29
    [letter] = await system.functions.dead_letters()
    assert (letter.event.stream_id, letter.attempts) == ("never", 1)
    assert (letter.error_type, letter.error_message) == ("DeadLetter", "customer unknown")


async def test_an_invocation_that_runs_too_long_times_out(system: System) -> None:
    @function(on=["Thing"], retries=1, timeout=0.05, **FAST)
    async def slow(event: FunctionEvent, ctx: Context) -> None:
        await asyncio.sleep(10)

    async with running(system, [slow]):
        await append(system, "s-1")
        await until(system.functions.dead_letters, within=3)
    [letter] = await system.functions.dead_letters()
    assert (letter.error_type, letter.attempts) == ("Timeout", 2)


async def test_a_poison_event_does_not_block_other_streams(system: System) -> None:
    done: list[str] = []

    @function(on=["Thing"], retries=3, concurrency=4, backoff=0.2, max_backoff=0.4)
    async def picky(event: FunctionEvent, ctx: Context) -> None:
        if event.data.get("poison"):
            raise ValueError("poison")
        done.append(f"{event.stream_id}/{event.stream_version}")

    async with running(system, [picky]):
        await append(system, "bad", poison=True)
        await append(system, "bad")
        for n in range(5):
            await append(system, f"good-{n}")
        await until(lambda: len(done) == 5, within=2)
        assert "bad/2" not in done  # the poisoned stream waits, in order
        assert await system.functions.dead_letters() == []  # ... while the poison is retried
        await until(lambda: "bad/2" in done, within=5)  # parked, then the stream moves on
    assert [letter.event.stream_id for letter in await system.functions.dead_letters()] == ["bad"]


async def test_waiting_for_a_slot_is_not_an_attempt_and_old_events_are_parked(
    system: System,
) -> None:
    calls: list[tuple[str, int]] = []

    @function(on=["Thing"], concurrency=1)
    async def single(event: FunctionEvent, ctx: Context) -> None:
        calls.append((event.stream_id, ctx.attempt))
        await asyncio.sleep(0.1)

    @function(on=["Thing"], concurrency=1, max_age=0.2, name="slow_single")
    async def slow_single(event: FunctionEvent, ctx: Context) -> None:
        await asyncio.sleep(0.3)

    async with running(system, [single, slow_single]):
        for n in range(3):
            await append(system, f"s-{n}")
        await until(lambda: len(calls) == 3)
        await until(lambda: _letters_of(system, "slow_single", 2))
    assert calls == [("s-0", 1), ("s-1", 1), ("s-2", 1)]
    letters = await system.functions.dead_letters("slow_single")
    assert {letter.error_type for letter in letters} == {"EventTooOld"}
    assert {letter.attempts for letter in letters} == {0}


async def _letters_of(system: System, name: str, count: int) -> bool:
    return len(await system.functions.dead_letters(name)) == count


async def test_a_slow_function_does_not_delay_another(system: System) -> None:
    fast_done: list[int] = []

    @function(on=["Thing"], timeout=60)
    async def sluggish(event: FunctionEvent, ctx: Context) -> None:
        await asyncio.sleep(5)

    @function(on=["Thing"])
    async def quick(event: FunctionEvent, ctx: Context) -> None:
        fast_done.append(event.position)

    async with running(system, [sluggish, quick]):
        for n in range(50):
            await append(system, "one-stream", n=n)
        await until(lambda: len(fast_done) == 50, within=3)


async def test_read_ahead_is_bounded(system: System) -> None:
    started: list[int] = []
    release = asyncio.Event()

    @function(on=["Thing"], concurrency=2, timeout=60)
    async def blocked(event: FunctionEvent, ctx: Context) -> None:
        started.append(event.position)
        await release.wait()

    async with running(system, [blocked], max_pending=10) as worker:
        for n in range(100):
            await append(system, f"s-{n}")
        await until(lambda: len(started) == 2)
        await asyncio.sleep(0.3)
        [runner] = worker.runners
        assert runner.pending == 10  # the reader waits for room instead of queueing 100
        release.set()
        await until(lambda: len(started) == 100)


async def test_the_idempotency_helper_does_not_repeat_a_side_effect_on_redelivery(
    system: System,
) -> None:
    effects: list[str] = []
    keys: list[str] = []

    @function(on=["Thing"], retries=3, **FAST)
    async def charge(event: FunctionEvent, ctx: Context) -> None:
        async def effect(key: str) -> str:
            effects.append(event.id)
            return f"receipt-{event.data['n']}"

        receipt = await ctx.once("charge", effect)
        keys.append(ctx.key("charge"))
        assert receipt == f"receipt-{event.data['n']}"
        if ctx.attempt == 1:
            raise RuntimeError("crash after the side effect")

    async with running(system, [charge]):
        await append(system, "s-1", n=1)
        await until(lambda: len(keys) == 2)
    assert len(effects) == 1 and keys[0] == keys[1]


async def test_send_and_publish_happen_once_per_event_and_carry_causation(
    system: System,
) -> None:
    @function(on=["Thing"], retries=2, **FAST)
    async def react(event: FunctionEvent, ctx: Context) -> None:
        await ctx.send(CreateInventoryItem(f"item-{event.data['n']}", "made by a function"))
        await ctx.publish("ThingNoticed", {"n": event.data["n"]})
        if ctx.attempt == 1:
            raise RuntimeError("fail after sending and publishing")

    async with running(system, [react]):
        await system.store.append("s-1", [NewEvent("Thing", {"n": 7}, {"correlationId": "corr-1"})])
        await until(lambda: _count(system, 3))
        await asyncio.sleep(0.3)
    events = await system.store.read_all()
    assert [e.type for e in events] == ["Thing", "InventoryItemCreated", "ThingNoticed"]
    source = events[0]
    for caused in events[1:]:
        assert caused.metadata["causationId"] == source.id
        assert caused.metadata["correlationId"] == "corr-1"
    assert events[2].stream_id == "ThingNoticed-s-1"


async def _count(system: System, n: int) -> bool:
    return await system.store.head() >= n


async def test_competing_workers_share_the_partitions_and_run_each_event_once(
    system: System,
) -> None:
    runs: list[tuple[str, str, int]] = []

    @function(on=["Thing"], concurrency=8)
    async def shared(event: FunctionEvent, ctx: Context) -> None:
        runs.append((ctx.function, event.stream_id, event.stream_version))

    async with running(system, [shared]) as first, running(system, [shared]) as second:
        await until(lambda: len(first.owned) == 8 and len(second.owned) == 8)
        assert not first.owned & second.owned
        for n in range(200):
            await append(system, f"s-{n % 20}")
        await until(lambda: len(runs) == 200)
    assert sorted((s, v) for _, s, v in runs) == sorted(
        {(f"s-{n}", v) for n in range(20) for v in range(1, 11)}
    )


def test_loading_functions_from_modules() -> None:
    loaded = load_functions(["eventgate.examples.inventory.functions"])
    assert [f.name for f in loaded] == ["low_stock_alert", "audit_trail"]
    with pytest.raises(ConfigError, match="cannot import"):
        load_functions(["no_such_module_here"])
    with pytest.raises(ConfigError, match="defines no @function"):
        load_functions(["json"])


def test_function_settings_are_checked() -> None:
    async def handler(event: FunctionEvent, ctx: Context) -> None: ...

    for bad in ({"retries": -1}, {"timeout": 0}, {"concurrency": 0}, {"on": []}):
        with pytest.raises(ConfigError):
            function(**{"on": ["X"], **bad})(handler)  # type: ignore[arg-type]


async def test_stopping_a_worker_mid_rebalance_is_not_swallowed() -> None:
    """A cancel that lands while a runner waits for its reader to stop must propagate (it
    was once suppressed with the reader's own CancelledError, and the worker ran on)."""

    async def reader() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.2)  # still winding down when the worker is cancelled

    runner = types.SimpleNamespace(_reader=asyncio.create_task(reader()))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(FunctionRunner._stop_reader(runner))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping


def test_the_functions_config_keys_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "eventgate.toml"
    config.write_text("app_functions = false\n")
    assert load_functions_config(config).app_functions is False
    config.write_text("reference_functions = false\n")  # its old name: refused, not ignored
    with pytest.raises(ConfigError, match="now app_functions"):
        load_functions_config(config)
