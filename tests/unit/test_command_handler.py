"""The command handler against a real store: order of checks, retries on races, metadata."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventgate.commands import CommandHandler
from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event
from eventgate.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    ConcurrencyError,
    RuleViolation,
)
from eventgate.eventstore import SQLiteEventStore
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.model import RecordedEvent
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


@pytest.fixture
async def two_handlers(tmp_path: Path) -> AsyncIterator[tuple[CommandHandler, CommandHandler]]:
    """Two handlers on one store, as two command processes on one database."""
    app = inventory_app()
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    yield (
        CommandHandler(store, EventCodec(app.events), app.commands),
        CommandHandler(store, EventCodec(app.events), app.commands),
    )
    await store.close()


async def test_remembered_history_never_decides_past_another_writer(
    two_handlers: tuple[CommandHandler, CommandHandler],
) -> None:
    """Handler a remembers item "a" at 0 in stock; b checks in 5 behind its back. a must still
    remove 3 (not refuse on its stale count), accept b's version as If-Match, and not take a
    rename to the current name for a no-op when b renamed it meanwhile."""
    a, b = two_handlers
    await a.execute(CreateInventoryItem("a", "widget"))
    await b.execute(CheckInItemsToInventory("a", 5))
    removed = await a.execute(RemoveItemsFromInventory("a", 3))
    assert removed.version == 3
    await b.execute(RenameInventoryItem("a", "gadget"))
    renamed = await a.execute(RenameInventoryItem("a", "renamed"), expected_version=4)
    assert renamed.version == 5
    await b.execute(RenameInventoryItem("a", "widget"))
    again = await a.execute(RenameInventoryItem("a", "renamed"))
    assert again.events and again.version == 7  # a remembered "renamed" already: not a no-op
    await b.execute(DeactivateInventoryItem("a"))
    with pytest.raises(RuleViolation):  # refused on the stored history, not the remembered one
        await a.execute(RenameInventoryItem("a", "x"))
    with pytest.raises(ConcurrencyError):  # a stale If-Match is still the caller's conflict
        await a.execute(RenameInventoryItem("a", "y"), expected_version=7)


async def test_a_command_on_a_remembered_stream_reads_nothing(handler: CommandHandler) -> None:
    await handler.execute(CreateInventoryItem("a", "widget"))
    reads = 0
    store = handler._store
    read_stream = store.read_stream

    async def counted(stream_id: str) -> list[RecordedEvent]:
        nonlocal reads
        reads += 1
        return await read_stream(stream_id)

    store.read_stream = counted  # type: ignore[method-assign]
    for n in range(3):
        await handler.execute(RenameInventoryItem("a", f"name {n}"))
    assert reads == 0
    history = await read_stream("a")
    assert [e.stream_version for e in history] == [1, 2, 3, 4]


@dataclass(frozen=True)
class MakeThing(Command):
    creates = True


@dataclass(frozen=True)
class CountTag(Command):
    tag: str


@dataclass(frozen=True)
class ThingMade(Event):
    tags: list[str]


@dataclass(frozen=True)
class TagCounted(Event):
    tag: str
    number: int


class Thing(Aggregate):
    """An aggregate that keeps a list from an event and changes it later: legal in `apply`
    and harmless when every command replays freshly decoded events."""

    type_name = "Thing"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.tags: list[str] = []

    def handle(self, command: Command) -> None:
        if isinstance(command, MakeThing):
            self.record(ThingMade([]))
        elif isinstance(command, CountTag):
            self.record(TagCounted(command.tag, len(self.tags) + 1))

    def apply(self, event: Event) -> None:
        if isinstance(event, ThingMade):
            self.tags = event.tags
        elif isinstance(event, TagCounted):
            self.tags.append(event.tag)


async def test_remembered_history_is_what_the_store_holds_whatever_apply_changes(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    handler = CommandHandler(store, EventCodec([ThingMade, TagCounted]),
                             {MakeThing: Thing, CountTag: Thing})  # fmt: skip
    try:
        await handler.execute(MakeThing("t"))
        for tag in "abcd":
            await handler.execute(CountTag("t", tag))
        history = await store.read_stream("t")
        assert history[0].data == {"tags": []}
        assert [e.data["number"] for e in history[1:]] == [1, 2, 3, 4]
    finally:
        await store.close()
