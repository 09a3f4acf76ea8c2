"""Projections reading the log from JetStream: the same batches as the store, from any
checkpoint, and the store itself where the stream lacks what comes next."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.broker.connection import Broker, open_broker
from eventgate.broker.feed import JetStreamFeed
from eventgate.broker.relay import CHECKPOINT_KEY, Relay
from eventgate.broker.wire import Layout
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.eventstore.model import RecordedEvent, keep_all
from tests.nats import NatsServer


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[Broker]:
    broker = await open_broker(nats_server.url, Layout(f"p{uuid.uuid4().hex[:8]}", 4))
    yield broker
    await broker.close()


async def relay_all(store: SQLiteEventStore, broker: Broker, head: int) -> None:
    relay = Relay(store, broker, batch_size=7)
    task = asyncio.create_task(relay.run())
    for _ in range(500):
        if relay.position >= head:
            break
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def read(feed: JetStreamFeed, after: int, count: int, batch: int = 8) -> list[RecordedEvent]:
    found: list[RecordedEvent] = []
    batches = feed.subscribe_matching(keep_all, after, batch)
    async with asyncio.timeout(10):
        async for scanned in batches:
            assert len(scanned.events) <= batch
            assert scanned.position == scanned.events[-1].position
            found += scanned.events
            if len(found) >= count:
                break
    await batches.aclose()  # type: ignore[attr-defined]
    return found


async def test_the_feed_gives_the_stores_events_after_any_checkpoint(
    tmp_path: Path, broker: Broker
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stored = []
    for n in range(50):
        stored += await store.append(f"s-{n % 6}", [NewEvent("E", {"n": n})])
    await relay_all(store, broker, stored[-1].position)
    feed = JetStreamFeed(broker, store)
    for start in (0, 1, 17, 48):
        after = stored[start - 1].position if start else 0
        assert await read(feed, after, 50 - start) == stored[start:]

    # following live: an event appended and relayed later comes next
    live = asyncio.create_task(read(feed, stored[-1].position, 1))
    [more] = await store.append("s-0", [NewEvent("E", {"n": 50})])
    await relay_all(store, broker, more.position)
    assert await live == [more]
    await store.close()


async def test_where_the_stream_starts_late_the_feed_reads_the_store(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stored = []
    for n in range(30):
        stored += await store.append(f"s-{n % 4}", [NewEvent("E", {"n": n})])
    # the relay first ran with a checkpoint at the 20th event: the stream holds 21..30
    await broker.state.put(CHECKPOINT_KEY, str(stored[19].position).encode())
    await relay_all(store, broker, stored[-1].position)
    assert (await broker.js.stream_info(broker.layout.stream)).state.messages == 10
    feed = JetStreamFeed(broker, store)
    with caplog.at_level(logging.WARNING, "eventgate.broker"):
        assert await read(feed, stored[9].position, 20) == stored[10:]
    assert "lacks the events after" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "eventgate.broker"):
        assert await read(feed, stored[19].position, 10) == stored[20:]
        assert await read(feed, stored[24].position, 5) == stored[25:]
    assert "lacks" not in caplog.text
    await store.close()


async def test_a_stream_trimmed_under_a_following_feed_costs_no_event(
    tmp_path: Path, broker: Broker
) -> None:
    """Messages removed from the stream (limits, a purge) while a projection follows it: the
    feed notices the gap in the sequence and reads the store for what is missing."""
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stored = []
    for n in range(5):
        stored += await store.append(f"s-{n % 3}", [NewEvent("E", {"n": n})])
    await relay_all(store, broker, stored[-1].position)
    feed = JetStreamFeed(broker, store)
    batches = feed.subscribe_matching(keep_all, 0, 100)
    found: list[RecordedEvent] = []
    async with asyncio.timeout(20):
        while len(found) < 5:
            found += (await anext(batches)).events
        for n in range(5, 20):
            stored += await store.append(f"s-{n % 3}", [NewEvent("E", {"n": n})])
        await relay_all(store, broker, stored[-1].position)
        await broker.js.purge_stream(broker.layout.stream, seq=11)  # drops sequences 6..10
        while len(found) < 20:
            found += (await anext(batches)).events
    await batches.aclose()  # type: ignore[attr-defined]
    assert found == stored
    await store.close()
