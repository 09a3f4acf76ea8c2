"""The WebSocket's bounds, in process over a real SQLite store: a client that stops taking
frames is closed with 1008 and why, by the query service and by `serve gateway`'s relay (to a
real uvicorn over loopback); past the client limit (shared with SSE) a connection is closed
with 1013 at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import uvicorn
from starlette.types import Message, Receive, Send

from eventgate.cli.serving import address, bind
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.gateway.upstream import RemoteUpstream
from eventgate.http.router import Router
from eventgate.streaming.sse import EventStream
from eventgate.streaming.websocket import PROTOCOL, EventSocket

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
