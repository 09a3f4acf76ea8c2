"""The function `eventgate serve functions` runs in test_function_workers.py.

It logs every invocation (at-least-once evidence) and applies one guarded side effect per
event to a "downstream" SQLite file that counts every application and keeps one row per
idempotency key, as a payment provider keyed by idempotency key would.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import orjson

from eventgate import Context, FunctionEvent, function


@function(on=["Work"], concurrency=4, retries=3, backoff=0.01, max_backoff=0.05, timeout=10.0)
async def work(event: FunctionEvent, ctx: Context) -> None:
    out = Path(ctx.settings["out_dir"])
    line = {"pid": os.getpid(), "stream": event.stream_id, "version": event.stream_version}
    await asyncio.to_thread(_log, out / "invocations.jsonl", {**line, "id": event.id})
    await asyncio.sleep(0.005)

    async def effect(key: str) -> None:
        await asyncio.to_thread(_apply, out / "downstream.sqlite", key, event.id)

    await ctx.once("effect", effect)


def _log(path: Path, entry: dict[str, object]) -> None:
    with path.open("ab") as log:
        log.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))


def _apply(path: Path, key: str, event_id: str) -> None:
    with sqlite3.connect(path, timeout=30) as downstream:
        downstream.execute("INSERT INTO applied (event_id) VALUES (?)", (event_id,))
        downstream.execute(
            "INSERT OR IGNORE INTO effects (key, event_id) VALUES (?, ?)", (key, event_id)
        )
    downstream.close()
