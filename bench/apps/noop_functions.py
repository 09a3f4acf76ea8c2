"""A function that does nothing, for bench/functions.py."""

from __future__ import annotations

from eventgate import Context, FunctionEvent, function


@function(on=["Bench"], concurrency=64)
async def noop(event: FunctionEvent, ctx: Context) -> None:
    return None
