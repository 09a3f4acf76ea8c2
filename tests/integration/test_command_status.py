"""Command status against the real SQLite files: a function that gives up on a command's
event marks the command failed; the wait for read models ends when they pass it, or in time."""

from __future__ import annotations

import asyncio
from typing import Any

from eventgate.bootstrap import System, command_statuses
from eventgate.examples.inventory.domain import CheckInItemsToInventory, CreateInventoryItem
from eventgate.functions import Context, FunctionEvent, function
from tests.integration.test_functions import FAST, running, until


async def status(system: System, command_id: str) -> dict[str, Any]:
    found = await command_statuses(system).of(command_id)
    assert found is not None
    return found


async def test_a_function_giving_up_on_an_event_of_the_command_marks_it_failed(
    system: System,
) -> None:
    @function(on=["ItemsCheckedInToInventory"], retries=1, **FAST)
    async def refuses(event: FunctionEvent, ctx: Context) -> None:
        raise ValueError("no stock from that supplier")

    created = await system.commands.execute(CreateInventoryItem("i-1", "bolts"))
    async with running(system, [refuses]):
        checked_in = await system.commands.execute(CheckInItemsToInventory("i-1", 5))
        await until(lambda: _failed(system, checked_in.command_id))
    failed = await status(system, checked_in.command_id)
    [failure] = failed["failures"]
    assert failure["function"] == "refuses"
    assert failure["eventId"] == checked_in.events[0].id
    assert failure["eventType"] == "ItemsCheckedInToInventory"
    assert failure["error"] == "ValueError: no stock from that supplier"
    assert failure["state"] == "dead" and failure["attempts"] == 2  # retries=1: two attempts
    assert (await status(system, created.command_id))["outcome"] == "succeeded"


async def _failed(system: System, command_id: str) -> bool:
    return (await status(system, command_id))["outcome"] == "failed"


async def test_waiting_ends_when_the_read_models_pass_the_command_or_in_time(
    system: System,
) -> None:
    statuses = command_statuses(system)
    result = await system.commands.execute(CreateInventoryItem("i-2", "nuts"))
    assert await statuses.behind(result.position) == sorted(system.read_store.projections)
    assert not await statuses.wait_applied(result.position, 0.05)  # no upsert service runs
    upsert = asyncio.create_task(system.upsert.run())
    try:
        assert await statuses.wait_applied(result.position, 5)
        assert (await status(system, result.command_id))["status"] == "applied"
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)
