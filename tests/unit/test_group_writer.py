"""GroupWriter: concurrent submits share writes; each caller gets its own write's outcome."""

from __future__ import annotations

import asyncio

import pytest

from eventgate.batching import GroupWriter


async def test_concurrent_items_share_writes_and_all_are_written() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        await asyncio.sleep(0.01)  # a commit: whatever arrives meanwhile waits for the next
        writes.append(items)

    writer = GroupWriter(write, max_batch=40)
    await asyncio.gather(*(writer.submit(n) for n in range(100)))
    assert sorted(n for batch in writes for n in batch) == list(range(100))
    assert len(writes) <= 4 and all(len(batch) <= 40 for batch in writes)


async def test_a_failed_write_fails_its_callers_only() -> None:
    async def write(items: list[int]) -> None:
        await asyncio.sleep(0)
        if 13 in items:
            raise OSError("disk full")

    writer = GroupWriter(write)
    results = await asyncio.gather(writer.submit(13), writer.submit(14), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)  # one write carried both
    await writer.submit(15)  # the writer goes on


async def test_a_cancelled_caller_still_has_its_item_written() -> None:
    written: list[int] = []
    started = asyncio.Event()

    async def write(items: list[int]) -> None:
        started.set()
        await asyncio.sleep(0.02)
        written.extend(items)

    writer = GroupWriter(write)
    caller = asyncio.create_task(writer.submit(1))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await writer.submit(2)
    assert written == [1, 2]
