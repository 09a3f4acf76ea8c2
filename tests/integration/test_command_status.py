"""Command status against the real SQLite files: a function that gives up on a command's
event marks the command failed; the wait for read models ends when they pass it, or in time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from eventgate.bootstrap import System, command_statuses
from eventgate.eventstore import NewEvent
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
    assert (await status(system, created.command_id))["outcome"] == "pending"  # audit_trail


async def _failed(system: System, command_id: str) -> bool:
    return (await status(system, command_id))["outcome"] == "failed"


async def test_waiting_ends_when_the_read_models_pass_the_command_or_in_time(
    system: System,
) -> None:
    statuses = command_statuses(system)
    result = await system.commands.execute(CreateInventoryItem("i-2", "nuts"))
    assert await statuses.behind(result.events) == sorted(system.read_store.projections)
    assert not await statuses.wait_applied(result.events, 0.05)  # no upsert service runs
    upsert = asyncio.create_task(system.upsert.run())
    try:
        assert await statuses.wait_applied(result.events, 5)
        assert (await status(system, result.command_id))["status"] == "applied"
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)


async def test_a_read_model_that_parked_the_command_s_stream_makes_it_failed_not_applied(
    system: System,
) -> None:
    await system.commands.execute(CreateInventoryItem("i-3", "washers"))
    poison = NewEvent("InventoryItemRenamed", {"id": "i-3", "newName": None},
                      metadata={"commandId": "cmd-poison", "commandType": "Rename"})  # fmt: skip
    [event] = await system.store.append("i-3", [poison])
    upsert = asyncio.create_task(system.upsert.run())
    try:
        await until(lambda: _parked(system))
        statuses = command_statuses(system)
        assert not await statuses.wait_applied([event], 5)  # at once: no wait can change it
        found = await status(system, "cmd-poison")
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)
    assert found["status"] == "accepted" and found["outcome"] == "failed"
    assert found["pendingReadModels"] == sorted(system.read_store.projections)
    assert {f["projection"] for f in found["failures"]} == set(system.read_store.projections)
    assert all(f["stream"] == "i-3" and f["error"] for f in found["failures"])


async def _parked(system: System) -> bool:
    return len(await system.read_store.parked_streams()) == len(system.read_store.projections)


async def test_a_webhook_that_gave_up_does_not_fail_the_command_nor_show_its_error(
    system: System,
) -> None:
    result = await system.commands.execute(CreateInventoryItem("i-4", "rivets"))
    [event] = result.events
    failed = ("DeliveryFailed", "cannot connect to billing.internal:8443")
    await system.functions.dead_letter("webhook.0199", 0, event, failed, 5, datetime.now(UTC))
    found = await status(system, result.command_id)
    assert found["failures"] == [] and found["outcome"] != "failed"
    assert "billing.internal" not in str(found)


async def test_the_outcome_waits_for_the_app_s_functions_then_says_succeeded(
    system: System,
) -> None:
    result = await system.commands.execute(CreateInventoryItem("i-5", "screws"))
    found = await status(system, result.command_id)
    assert found["outcome"] == "pending"
    assert {f["function"]: f["state"] for f in found["functions"]} == {"audit_trail": "pending"}
    async with running(system, system.app.functions):
        await until(lambda: _outcome_is(system, result.command_id, "succeeded"))
    found = await status(system, result.command_id)
    assert found["functions"] == [{"function": "audit_trail", "state": "done"}]


async def _outcome_is(system: System, command_id: str, outcome: str) -> bool:
    return (await status(system, command_id))["outcome"] == outcome
