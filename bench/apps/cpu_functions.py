"""A function that burns 0.5 ms of CPU per event, for bench/functions.py."""

from __future__ import annotations

import time

from eventgate import Context, FunctionEvent, function

CPU_SECONDS = 0.0005


@function(on=["Bench"], concurrency=64)
async def burn(event: FunctionEvent, ctx: Context) -> None:
    """A busy loop on this thread's CPU clock: the event loop is held, as real CPU work
    would hold it, and time the process spends waiting for a core does not count."""
    deadline = time.thread_time() + CPU_SECONDS
    while time.thread_time() < deadline:
        pass
