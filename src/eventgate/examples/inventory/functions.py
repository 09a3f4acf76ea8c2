"""The inventory's functions, run by `eventgate up` with the app.

- `low_stock_alert` publishes an `InventoryLowStock` integration event when a removal takes
  an item's stock below `low_stock_threshold` (config `[function_settings]`, default 5).
- `audit_trail` appends every event, once, as a JSON line to `<data dir>/audit.jsonl`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from eventgate import Context, FunctionEvent, function

__all__ = ["DEFAULT_LOW_STOCK_THRESHOLD", "audit_trail", "low_stock_alert"]

DEFAULT_LOW_STOCK_THRESHOLD = 5


@function(on=["ItemsRemovedFromInventory"], retries=5, timeout=10.0, concurrency=8)
async def low_stock_alert(event: FunctionEvent, ctx: Context) -> None:
    """Alert once when a removal crosses the threshold (not again while it stays below)."""
    threshold = int(ctx.settings.get("low_stock_threshold", DEFAULT_LOW_STOCK_THRESHOLD))
    name, stock = "", 0
    for earlier in await ctx.history():  # the stream up to this event: same on redelivery
        if earlier.type in ("InventoryItemCreated", "InventoryItemRenamed"):
            name = earlier.data.get("name", earlier.data.get("newName", name))
        elif earlier.type == "ItemsCheckedInToInventory":
            stock += earlier.data["count"]
        elif earlier.type == "ItemsRemovedFromInventory":
            stock -= earlier.data["count"]
    before = stock + event.data["count"]
    if stock < threshold <= before:
        await ctx.publish(
            "InventoryLowStock",
            {"id": event.stream_id, "name": name, "count": stock, "threshold": threshold},
        )
        ctx.logger.info("%s (%s) is low on stock: %d left", name, event.stream_id, stock)


@function(on=["*"], retries=10, timeout=10.0, concurrency=4)
async def audit_trail(event: FunctionEvent, ctx: Context) -> None:
    """One line per event, written once even when the event is delivered again."""
    line = orjson.dumps(event.to_json(), option=orjson.OPT_APPEND_NEWLINE)
    path = ctx.data_dir / "audit.jsonl"

    async def append(_: str) -> None:
        await asyncio.to_thread(_append, path, line)

    await ctx.once("audit-line", append)


def _append(path: Path, line: bytes) -> None:
    with path.open("ab") as audit:
        audit.write(line)
