"""The WebSocket's bounds, in process over a real SQLite store: a client that stops taking
frames is closed with 1008 and why, by the query service and by `serve gateway`'s relay (to a
real uvicorn over loopback); past the client limit (shared with SSE) a connection is closed
with 1013 at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Send

from eventgate.cli.serving import address, bind
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.gateway.upstream import RemoteUpstream
from eventgate.http.router import Router
from eventgate.streaming.sse import EventStream
from eventgate.streaming.websocket import (
    MAX_EVENT,
    MESSAGE_BURST,
    MESSAGE_RATE,
    PROTOCOL,
    EventSocket,
)

SCOPE = {"type": "websocket", "path": "/api/events/ws", "query_string": b"", "headers": [],
         "subprotocols": [PROTOCOL]}  # fmt: skip


def stalled_client() -> tuple[Receive, Send, list[Message]]:
    """A client that subscribes, then takes no event frame (its window is full) and sends
    nothing more; what it was sent."""
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": '{"type": "subscribe", "subscription": "a"}'},
    ]
    sent: list[Message] = []
    never = asyncio.Event()

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await never.wait()
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(message: Message) -> None:
        if message["type"] == "websocket.send" and '"type":"event"' in message["text"]:
            await never.wait()
        sent.append(message)

    return receive, send, sent


def assert_closed_as_too_slow(sent: list[Message]) -> None:
    assert sent[0] == {"type": "websocket.accept", "subprotocol": PROTOCOL}
    assert orjson.loads(sent[1]["text"]) == {"type": "subscribed", "subscription": "a"}
    closed = sent[-1]
    assert closed["type"] == "websocket.close" and closed["code"] == 1008
    assert "0.3 s" in closed["reason"] and "resume with after" in closed["reason"]
    assert len(closed["reason"].encode()) <= 123  # what a close frame can carry


async def store_of_five(path: Path) -> SQLiteEventStore:
    store = await SQLiteEventStore.open(path / "events.sqlite")
    for n in range(5):
        await store.append("s", [NewEvent("E", {"n": n})])
    return store


async def test_a_client_that_stops_taking_frames_is_closed_with_1008_and_why(
    tmp_path: Path,
) -> None:
    store = await store_of_five(tmp_path)
    events = EventStream(store, "urn:eventgate:test", send_timeout=0.3)
    receive, send, sent = stalled_client()
    async with asyncio.timeout(5):
        await EventSocket(events)(dict(SCOPE), receive, send)
    assert_closed_as_too_slow(sent)
    assert events.clients == 0
    await store.close()


async def test_serve_gateways_relay_closes_a_client_that_stops_taking_frames_with_1008(
    tmp_path: Path,
) -> None:
    store = await store_of_five(tmp_path)
    listening = bind("127.0.0.1", 0)  # takes connections before uvicorn has started
    service = Router([], {SCOPE["path"]: EventSocket(EventStream(store, "urn:eventgate:test"))})
    server = uvicorn.Server(uvicorn.Config(service, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    upstream = RemoteUpstream([address(listening)], timeout=0.3)
    receive, send, sent = stalled_client()
    try:
        async with asyncio.timeout(5):
            await upstream({**SCOPE, "headers": []}, receive, send)
    finally:
        await upstream.aclose()
        server.should_exit = True
        await serving
        listening.close()
        await store.close()
    assert_closed_as_too_slow(sent)


async def test_past_the_client_limit_a_connection_is_closed_with_1013(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    events = EventStream(store, "urn:eventgate:test", max_clients=0)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await EventSocket(events)(dict(SCOPE), receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == 1013 and "try again later" in sent[1]["reason"]
    assert events.clients == 0
    await store.close()


async def scripted(
    server: ASGIApp, messages: list[str], enough: Callable[[list[Message]], bool] = bool
) -> list[Message]:
    """What `server` sends a client that sends `messages` at once, then waits until it
    closes, what it sent is `enough` (then it leaves), or 5 s."""
    incoming: list[Message] = [{"type": "websocket.connect"}]
    incoming += [{"type": "websocket.receive", "text": text} for text in messages]
    sent: list[Message] = []
    closed = asyncio.Event()

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "websocket.close" or (enough is not bool and enough(sent)):
            closed.set()

    async def close_later() -> None:
        await asyncio.sleep(5)
        closed.set()

    later = asyncio.create_task(close_later())
    await server(dict(SCOPE), receive, send)
    later.cancel()
    return sent


def errors_in(sent: list[Message]) -> list[dict[str, Any]]:
    texts = [orjson.loads(m["text"]) for m in sent if m["type"] == "websocket.send"]
    return [m["problem"] for m in texts if m["type"] == "error"]


async def test_a_subscription_with_a_glob_past_the_limits_is_refused_naming_them(
    tmp_path: Path,
) -> None:
    store = await store_of_five(tmp_path)
    subscribe = {"type": "subscribe", "subscription": "slow", "types": ["*a" * 600 + "b"] * 50}
    socket = EventSocket(EventStream(store, "urn:eventgate:test"))
    sent = await scripted(socket, [orjson.dumps(subscribe).decode()])
    [problem] = errors_in(sent)
    assert problem["status"] == 422 and "200 characters" in problem["detail"]
    await store.close()


async def test_messages_past_the_rate_are_refused_and_sustained_they_close_with_1008(
    tmp_path: Path,
) -> None:
    store = await store_of_five(tmp_path)
    unsubscribe = '{"type": "unsubscribe", "subscription": "none"}'
    socket = EventSocket(EventStream(store, "urn:eventgate:test"))
    sent = await scripted(socket, [unsubscribe] * 1000)
    statuses = [problem["status"] for problem in errors_in(sent)]
    assert statuses[:MESSAGE_BURST] == [404] * MESSAGE_BURST  # a burst is taken
    assert 429 in statuses and len(statuses) < 1000
    closed = sent[-1]
    assert closed["type"] == "websocket.close" and closed["code"] == 1008
    assert f"rate of {MESSAGE_RATE:g} a second" in closed["reason"]
    await store.close()


async def store_with_big_events(path: Path) -> SQLiteEventStore:
    """Events of 1 byte, 5 MiB (past aiohttp's default message size), over MAX_EVENT, 1 byte:
    the stores take any size (a function may append what a command body could not carry)."""
    store = await SQLiteEventStore.open(path / "events.sqlite")
    for size in (1, 5 * 2**20, MAX_EVENT + 1, 1):
        await store.append("s", [NewEvent("E", {"blob": "x" * size})])
    return store


def assert_each_event_or_an_error_naming_it(sent: list[Message]) -> None:
    texts = [orjson.loads(m["text"]) for m in sent if m["type"] == "websocket.send"]
    assert texts[0] == {"type": "subscribed", "subscription": "a"}
    assert [m["type"] for m in texts[1:]] == ["event", "event", "error", "event"]
    assert [len(m["event"]["data"]["blob"]) for m in texts[1:3]] == [1, 5 * 2**20]
    too_big = texts[3]
    assert too_big["subscription"] == "a" and too_big["sequence"] == "3"
    assert too_big["problem"]["status"] == 413 and "16 MiB" in too_big["problem"]["detail"]
    assert texts[4]["event"]["sequence"] == "4"  # it goes on past the one it could not send
    answered = max(n for n, m in enumerate(sent) if m["type"] == "websocket.send")
    assert all(m["type"] != "websocket.close" for m in sent[:answered])  # not closed before


def four_answers(sent: list[Message]) -> bool:
    return sum(m["type"] == "websocket.send" for m in sent) == 5


SUBSCRIBE = '{"type": "subscribe", "subscription": "a"}'


async def test_an_event_over_the_message_limit_is_an_error_with_its_sequence_then_the_next(
    tmp_path: Path,
) -> None:
    store = await store_with_big_events(tmp_path)
    socket = EventSocket(EventStream(store, "urn:eventgate:test"))
    sent = await scripted(socket, [SUBSCRIBE], four_answers)
    assert_each_event_or_an_error_naming_it(sent)
    await store.close()


async def test_serve_gateways_relay_carries_events_up_to_the_limit_and_the_error_past_it(
    tmp_path: Path,
) -> None:
    store = await store_with_big_events(tmp_path)
    listening = bind("127.0.0.1", 0)
    service = Router([], {SCOPE["path"]: EventSocket(EventStream(store, "urn:eventgate:test"))})
    server = uvicorn.Server(uvicorn.Config(service, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    upstream = RemoteUpstream([address(listening)])
    try:
        sent = await scripted(upstream, [SUBSCRIBE], four_answers)
    finally:
        await upstream.aclose()
        server.should_exit = True
        await serving
        listening.close()
        await store.close()
    assert_each_event_or_an_error_naming_it(sent)


class Client:
    """A WebSocket client of `socket` as `consumer`, in process: `say` a message, `heard`
    what the server sent, `leave` to disconnect."""

    def __init__(self, socket: EventSocket, consumer: str) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []
        self.incoming.put_nowait({"type": "websocket.connect"})
        headers = [(b"x-eventgate-consumer", consumer.encode())]
        self.task = asyncio.create_task(socket({**SCOPE, "headers": headers},
                                               self.incoming.get, self._send))  # fmt: skip

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    async def say(self, text: str) -> dict[str, Any]:
        """Send `text`; the server's answer (the next message that is not an event)."""
        before = len(self.sent)
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})
        async with asyncio.timeout(5):
            while True:
                for message in self.sent[before:]:
                    if message["type"] == "websocket.send" and '"event"' not in message["text"]:
                        answer: dict[str, Any] = orjson.loads(message["text"])
                        return answer
                await asyncio.sleep(0.01)

    async def leave(self) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await self.task


def subscribe(sid: str) -> str:
    return orjson.dumps({"type": "subscribe", "subscription": sid}).decode()


async def test_a_consumer_past_its_streams_gets_429_for_a_subscription_and_1013_for_a_socket(
    tmp_path: Path,
) -> None:
    store = await store_of_five(tmp_path)
    events = EventStream(store, "urn:eventgate:test", max_per_consumer=2)
    socket = EventSocket(events)
    first = Client(socket, "browser")
    assert (await first.say(subscribe("a")))["type"] == "subscribed"  # the connection's own
    assert (await first.say(subscribe("b")))["type"] == "subscribed"
    refused = await first.say(subscribe("c"))
    assert refused["subscription"] == "c" and refused["problem"]["status"] == 429
    assert "2 event streams" in refused["problem"]["detail"]
    second = Client(socket, "browser")
    await second.task
    closed = second.sent[-1]
    assert closed["type"] == "websocket.close" and closed["code"] == 1013
    assert "2 event streams" in closed["reason"] and len(closed["reason"].encode()) <= 123
    other = Client(socket, "other")  # another consumer has its own
    assert (await other.say(subscribe("a")))["type"] == "subscribed"
    unsubscribe = '{"type": "unsubscribe", "subscription": "b"}'
    assert (await first.say(unsubscribe))["type"] == "unsubscribed"
    assert (await first.say(subscribe("c")))["type"] == "subscribed"  # b's stream is free
    await first.leave()
    await other.leave()
    assert events.quota.held("browser") == events.quota.held("other") == 0
    assert events.clients == 0
    await store.close()
