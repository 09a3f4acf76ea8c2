"""Per-stream order under concurrency, for hypothesis-generated interleavings of streams,
durations and transient failures: each stream's events run one at a time, in order, none
skipped, while at most `concurrency` run at once."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eventgate.bootstrap import function_worker, open_system
from eventgate.config import Settings
from eventgate.eventstore.model import NewEvent
from eventgate.examples.inventory import inventory_app
from eventgate.functions import Context, FunctionEvent, function

# (stream, duration in ms, fails its first attempt)
plans = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from([0, 1, 5]), st.booleans()),
    min_size=1,
    max_size=30,
)


@settings(max_examples=15, deadline=None)
@given(plan=plans, concurrency=st.integers(1, 4), appends_at_once=st.integers(1, 5))
def test_each_stream_runs_in_order_one_at_a_time(
    plan: list[tuple[int, int, bool]], concurrency: int, appends_at_once: int
) -> None:
    asyncio.run(scenario(plan, concurrency, appends_at_once))


async def scenario(plan: list[tuple[int, int, bool]], concurrency: int, batch: int) -> None:
    done: dict[str, list[int]] = {}
    running: set[str] = set()
    peak = 0
    all_done = asyncio.Event()

    @function(on=["Step"], retries=2, concurrency=concurrency, backoff=0.001, max_backoff=0.002)
    async def step(event: FunctionEvent, ctx: Context) -> None:
        nonlocal peak
        assert event.stream_id not in running, "two events of one stream at once"
        running.add(event.stream_id)
        peak = max(peak, len(running))
        try:
            await asyncio.sleep(event.data["ms"] / 1000)
            if event.data["flaky"] and ctx.attempt == 1:
                raise ConnectionError("transient")
            done.setdefault(event.stream_id, []).append(event.stream_version)
            if sum(map(len, done.values())) == len(plan):
                all_done.set()
        finally:
            running.discard(event.stream_id)

    with tempfile.TemporaryDirectory() as tmp:
        system = await open_system(Settings(data_dir=Path(tmp)), inventory_app())
        worker = function_worker(system, [step], heartbeat=0.05, ttl=2.0)
        task = asyncio.create_task(worker.run())
        try:
            for first in range(0, len(plan), batch):
                await asyncio.gather(
                    *(
                        system.store.append(f"s-{s}", [NewEvent("Step", {"ms": ms, "flaky": f})])
                        for s, ms, f in plan[first : first + batch]
                    )
                )
            async with asyncio.timeout(20):
                await all_done.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await system.close()
    expected: dict[str, int] = {}
    for s, _, _ in plan:
        expected[f"s-{s}"] = expected.get(f"s-{s}", 0) + 1
    assert done == {stream: list(range(1, n + 1)) for stream, n in expected.items()}
    assert peak <= concurrency
