"""The command handler against a real store: order of checks, retries on races, metadata."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.commands import CommandHandler
from eventgate.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    ConcurrencyError,
    RuleViolation,
)
from eventgate.eventstore import SQLiteEventStore
from eventgate.eventstore.codec import EventCodec
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    DeactivateInventoryItem,
    InventoryItem,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)


@pytest.fixture
async def handler(tmp_path: Path) -> AsyncIterator[CommandHandler]:
    app = inventory_app()
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    yield CommandHandler(store, EventCodec(app.events), app.commands)
    await store.close()


async def test_a_command_on_an_unknown_item_is_not_found(handler: CommandHandler) -> None:
    with pytest.raises(AggregateNotFound):
        await handler.execute(RenameInventoryItem("nope", "x"))


async def test_creating_an_existing_id_is_refused(handler: CommandHandler) -> None:
    await handler.execute(CreateInventoryItem("a", "widget"))
    with pytest.raises(AggregateAlreadyExists):
        await handler.execute(CreateInventoryItem("a", "other"))


async def test_a_stale_expected_version_wins_over_business_rules(handler: CommandHandler) -> None:
    await handler.execute(CreateInventoryItem("a", "widget"))
    await handler.execute(DeactivateInventoryItem("a"))
    with pytest.raises(ConcurrencyError):
        await handler.execute(RenameInventoryItem("a", "x"), expected_version=1)
    with pytest.raises(ConcurrencyError):
        await handler.execute(DeactivateInventoryItem("a"), expected_version=1)
    with pytest.raises(RuleViolation):
        await handler.execute(RenameInventoryItem("a", "x"), expected_version=2)


async def test_a_no_op_returns_the_last_position_as_its_token(handler: CommandHandler) -> None:
    await handler.execute(CreateInventoryItem("a", "widget"))
    first = await handler.execute(DeactivateInventoryItem("a"))
    again = await handler.execute(DeactivateInventoryItem("a"))
    assert again.events == [] and again.position == first.position and again.version == 2


async def test_metadata_carries_correlation_and_causation(handler: CommandHandler) -> None:
    result = await handler.execute(
        CreateInventoryItem("a", "widget"), metadata={"correlationId": "req-7", "user": "u"}
    )
    metadata = result.events[0].metadata
    assert metadata["correlationId"] == "req-7"
    assert metadata["causationId"] == result.command_id == metadata["commandId"]
    assert metadata["user"] == "u" and metadata["commandType"] == "CreateInventoryItem"


async def test_concurrent_stock_moves_without_if_match_all_succeed(
    handler: CommandHandler,
) -> None:
    await handler.execute(CreateInventoryItem("a", "widget"))
    await asyncio.gather(*(handler.execute(CheckInItemsToInventory("a", 2)) for _ in range(20)))
    results = await asyncio.gather(
        *(handler.execute(RemoveItemsFromInventory("a", 3)) for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 13  # 40 // 3
    assert all(isinstance(r, RuleViolation) for r in results if isinstance(r, BaseException))


async def test_a_command_sent_again_with_its_id_is_not_applied_twice(
    handler: CommandHandler,
) -> None:
    created = await handler.execute(CreateInventoryItem("a", "widget"), command_id="c-1")
    again = await handler.execute(CreateInventoryItem("a", "widget"), command_id="c-1")
    assert again.position == created.position and again.version == 1
    moved = await handler.execute(CheckInItemsToInventory("a", 3), command_id="c-2")
    repeat = await handler.execute(CheckInItemsToInventory("a", 3), command_id="c-2")
    assert (repeat.position, repeat.version) == (moved.position, moved.version)
    item = await handler.load(InventoryItem, "a")
    assert isinstance(item, InventoryItem) and item.count == 3 and item.version == 2
    with pytest.raises(AggregateAlreadyExists):  # another id: a real second create
        await handler.execute(CreateInventoryItem("a", "widget"), command_id="c-3")
