"""The relay on a real NATS JetStream: order, CloudEvents, exactly once across kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary_event

import nats
from eventgate.broker.connection import Broker, open_broker
from eventgate.broker.relay import Relay, checkpoint
from eventgate.broker.wire import Layout, decode
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.eventstore.model import RecordedEvent
from eventgate.functions.runner import partition_of
from tests.nats import NatsServer, nats_binary
from tests.postgres import ROOT


@pytest.fixture
async def broker(nats_server: NatsServer) -> AsyncIterator[Broker]:
    broker = await open_broker(nats_server.url, Layout(f"t{uuid.uuid4().hex[:8]}", 4))
    yield broker
    await broker.close()


async def fill(store: SQLiteEventStore, count: int, streams: int = 7) -> list[RecordedEvent]:
    stored = []
    for n in range(count):
        metadata = {"correlationId": f"c-{n}", "causationId": f"k-{n}"}
        event = NewEvent("Counted" if n % 3 else "Other.Kind", {"n": n}, metadata)
        stored += await store.append(f"stream {n % streams}%", [event])
    return stored


async def stream_messages(
    url: str, layout: Layout, subject: str | None = None
) -> list[nats.aio.msg.Msg]:  # type: ignore[name-defined]
    """Every message of the app's stream (or of `subject`), read by a plain nats-py client."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info(layout.stream)
        found = []
        sub = await js.subscribe(subject or layout.subjects, ordered_consumer=True)
        want = info.state.messages if subject is None else None
        while want is None or len(found) < want:
            try:
                found.append(await sub.next_msg(timeout=1 if want is None else 10))
            except nats.errors.TimeoutError:
                if want is None:
                    break
                raise
        await sub.unsubscribe()
        return found
    finally:
        await client.close()


async def relayed(broker: Broker, count: int) -> None:
    deadline = time.monotonic() + 30
    while (await broker.js.stream_info(broker.layout.stream)).state.messages < count:
        assert time.monotonic() < deadline, "the relay did not publish every event in time"
        await asyncio.sleep(0.05)


async def test_every_event_is_a_cloudevent_in_the_stores_order(
    tmp_path: Path, broker: Broker, nats_server: NatsServer
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stored = await fill(store, 60)
    relay = Relay(store, broker, batch_size=16)
    task = asyncio.create_task(relay.run())
    await relayed(broker, 60)
    more = await fill(store, 5)  # live events follow
    await relayed(broker, 65)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    messages = await stream_messages(nats_server.url, broker.layout)
    assert [m.headers["ce-sequence"] for m in messages] == [str(e.position) for e in stored + more]
    for message, event in zip(messages, stored + more, strict=True):
        assert decode(message.headers, message.data) == event
        cloud = from_binary_event(HTTPMessage(dict(message.headers), message.data))
        assert cloud.get_id() == event.id and cloud.get_type() == event.type
        assert cloud.get_subject() == event.stream_id  # "stream 3%": percent-encoded and back
        assert cloud.get_source() == broker.layout.source
        assert cloud.get_time() == event.time
        assert cloud.get_data() == event.data
        assert cloud.get_extension("correlationid") == event.metadata["correlationId"]
        assert cloud.get_extension("sequence") == str(event.position)
        partition = partition_of(event.stream_id, broker.layout.partitions)
        token = event.type.replace(".", "_")  # a subject token holds no dot
        assert message.subject == f"eventgate.{broker.layout.token}.{partition}.{token}"
    assert await checkpoint(broker) == more[-1].position

    # a consumer filtering one partition gets exactly that partition's events, in order
    part = await stream_messages(
        nats_server.url, broker.layout, broker.layout.partition_subjects(1)
    )
    mine = [e for e in stored + more if partition_of(e.stream_id, 4) == 1]
    assert [m.headers["ce-id"] for m in part] == [e.id for e in mine]
    await store.close()


async def test_two_relays_at_once_still_publish_each_event_once_in_order(
    tmp_path: Path, broker: Broker, nats_server: NatsServer
) -> None:
    """The lease is not what keeps the stream right: a relay that lost its lease without
    noticing is fenced by the expected last sequence."""
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stored = await fill(store, 300)
    other = await open_broker(nats_server.url, broker.layout)
    tasks = [asyncio.create_task(Relay(store, b, batch_size=7).run()) for b in (broker, other)]
    more = []
    for _ in range(5):
        more += await fill(store, 20)
        await asyncio.sleep(0.01)
    await relayed(broker, 400)
    await asyncio.sleep(0.5)  # time enough for a double to show
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await other.close()
    messages = await stream_messages(nats_server.url, broker.layout)
    assert [m.headers["ce-id"] for m in messages] == [e.id for e in stored + more]
    await store.close()


@pytest.mark.slow
def test_kill_9_of_the_active_relay_loses_and_doubles_nothing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    app = f"k{uuid.uuid4().hex[:6]}"

    async def prepare() -> list[RecordedEvent]:
        store = await SQLiteEventStore.open(data / "events.sqlite")
        events = []
        for n in range(0, 30_000, 100):
            for k in range(100):
                events += await store.append(f"s-{(n + k) % 97}", [NewEvent("E", {"n": n + k})])
        await store.close()
        return events

    stored = asyncio.run(prepare())
    env = {**os.environ, "EVENTGATE_BROKER_URL": nats_server.url}
    command = [sys.executable, "-m", "eventgate.cli", "serve", "relay", "--data", str(data),
               "--app", "tests.integration.test_broker_relay:named_app"]  # fmt: skip
    env["EVENTGATE_TEST_APP_NAME"] = app
    layout = Layout(app, 16)

    async def count() -> int:
        client = await nats.connect(nats_server.url)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                return (await client.jetstream().stream_info(layout.stream)).state.messages
            return 0
        finally:
            await client.close()

    def relay() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip

    relays = [relay(), relay()]  # one relays (the lease), the other stands by
    for _ in range(3):
        start = asyncio.run(count())
        deadline = time.monotonic() + 60
        while asyncio.run(count()) < start + 3000 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.monotonic() < deadline, "the standby never took over"
        victim = relays.pop(0)  # the longest running: the one holding the lease
        victim.send_signal(signal.SIGKILL)  # mid-batch: publishes are in flight
        victim.wait()
        relays.append(relay())
    deadline = time.monotonic() + 120
    while asyncio.run(count()) < len(stored) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a double, if any, would land now
    for process in relays:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    messages = asyncio.run(stream_messages(nats_server.url, layout))
    assert len(messages) == len(stored)
    assert [m.headers["ce-id"] for m in messages] == [e.id for e in stored]


def named_app() -> object:
    """The inventory under another name (one stream per test on the shared server)."""
    from eventgate.examples.inventory import inventory_app

    return dataclasses.replace(inventory_app(), name=os.environ["EVENTGATE_TEST_APP_NAME"])


async def test_a_relay_with_a_stale_view_of_the_stream_is_refused(
    tmp_path: Path, broker: Broker
) -> None:
    """A relay that lost its lease without noticing and publishes new events where it
    thinks the stream ends is refused, messages in flight behind it too: no reordering."""
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    first = await fill(store, 10)
    relay = Relay(store, broker)
    await relay._publish(first, 0)
    later = await fill(store, 5)
    with pytest.raises(RuntimeError, match="refused"):
        await relay._publish(later, 8)  # it believes the stream ends at sequence 8
    with pytest.raises(RuntimeError, match="refused"):
        await relay._publish(later, first[7].id)  # or after the 8th event
    assert (await broker.js.stream_info(broker.layout.stream)).state.messages == 10
    await relay._publish(later, first[-1].id)
    assert (await broker.js.stream_info(broker.layout.stream)).state.messages == 15
    await store.close()


@pytest.mark.slow
async def test_the_relay_carries_on_after_the_broker_restarts(tmp_path: Path) -> None:
    binary = nats_binary()
    assert binary is not None
    server = NatsServer(binary).start()
    try:
        store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
        broker = await open_broker(server.url, Layout("restart", 4))
        task = asyncio.create_task(Relay(store, broker, batch_size=50).run())
        stored = await fill(store, 200)
        await relayed(broker, 200)
        server.stop()
        stored += await fill(store, 200)  # appended while the broker is down
        server.start()
        await relayed(broker, 400)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broker.close()
        messages = await stream_messages(server.url, Layout("restart", 4))
        assert [m.headers["ce-id"] for m in messages] == [e.id for e in stored]
        await store.close()
    finally:
        server.remove()


async def test_after_the_stream_was_emptied_the_relay_goes_on_from_its_checkpoint(
    tmp_path: Path, broker: Broker
) -> None:
    """Limits (max_age) or an operator's purge can leave a stream with no message; the relay
    then resumes from its checkpoint rather than failing on a last message that is gone."""
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    await fill(store, 10)
    relay = Relay(store, broker)
    task = asyncio.create_task(relay.run())
    await relayed(broker, 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await broker.js.purge_stream(broker.layout.stream)
    later = await fill(store, 5)
    task = asyncio.create_task(Relay(store, broker).run())
    await relayed(broker, 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    info = await broker.js.stream_info(broker.layout.stream)
    assert (info.state.messages, info.state.last_seq) == (5, 15)
    last = await broker.last_event()
    assert last == (later[-1].position, later[-1].id)
    await store.close()


async def test_a_stream_filled_from_another_store_stops_the_relay_with_a_clear_error(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory wiped (or restored) under a kept broker: relaying after the stream's
    last position would skip this store's events up to there."""
    first = await SQLiteEventStore.open(tmp_path / "first.sqlite")
    await fill(first, 8)
    task = asyncio.create_task(Relay(first, broker).run())
    await relayed(broker, 8)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    second = await SQLiteEventStore.open(tmp_path / "second.sqlite")
    await fill(second, 12)
    with caplog.at_level(logging.ERROR, "eventgate.broker"):
        task = asyncio.create_task(Relay(second, broker).run())
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "which this store does not hold there" in caplog.text
    assert (await broker.js.stream_info(broker.layout.stream)).state.messages == 8
    await first.close()
    await second.close()
