"""A function `eventgate up --functions tests.e2e.functions_for_up` runs in test_functions.py:
it fails while `<data dir>/broken` exists."""

from __future__ import annotations

from eventgate import Context, FunctionEvent, function


@function(on=["InventoryItemRenamed"], retries=1, backoff=0.05, max_backoff=0.1)
async def rename_hook(event: FunctionEvent, ctx: Context) -> None:
    if (ctx.data_dir / "broken").exists():
        raise ConnectionError(f"webhook for {event.data['newName']!r} is down")
