"""The WebSocket's bounds, in process over a real SQLite store: a client that stops taking
frames is closed with 1008 and why; past the client limit (shared with SSE) a connection is
closed with 1013 at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from starlette.types import Message

from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.streaming.sse import EventStream
from eventgate.streaming.websocket import PROTOCOL, EventSocket

SCOPE = {"type": "websocket", "path": "/api/events/ws", "query_string": b"", "headers": [],
         "subprotocols": [PROTOCOL]}  # fmt: skip


async def test_a_client_that_stops_taking_frames_is_closed_with_1008_and_why(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    for n in range(5):
        await store.append("s", [NewEvent("E", {"n": n})])
    events = EventStream(store, "urn:eventgate:test", send_timeout=0.3)
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
            await never.wait()  # the client's window is full: nothing more goes through
        sent.append(message)

    async with asyncio.timeout(5):
        await EventSocket(events)(dict(SCOPE), receive, send)
    assert sent[0] == {"type": "websocket.accept", "subprotocol": PROTOCOL}
    assert orjson.loads(sent[1]["text"]) == {"type": "subscribed", "subscription": "a"}
    closed = sent[-1]
    assert closed["type"] == "websocket.close" and closed["code"] == 1008
    assert "0.3 s" in closed["reason"] and "resume with after" in closed["reason"]
    assert len(closed["reason"].encode()) <= 123  # what a close frame can carry
    assert events.clients == 0
    await store.close()


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
