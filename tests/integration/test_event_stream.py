"""The event stream's bounds, in process: a client that stops reading is told why and let go;
too many clients get a 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.types import Message

from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.http.problems import HTTPProblem
from eventgate.streaming.sse import EventStream


def request(query: bytes = b"") -> Request:
    scope = {"type": "http", "method": "GET", "path": "/api/events", "query_string": query,
             "headers": [], "path_params": {}}  # fmt: skip
    return Request(scope)


async def test_a_client_that_stops_reading_is_told_why_and_disconnected(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    for n in range(5):
        await store.append("s", [NewEvent("E", {"n": n})])
    stream = EventStream(store, "urn:eventgate:test", send_timeout=0.3)
    app = await stream.all(request())
    sent: list[bytes] = []
    never = asyncio.Event()

    async def send(message: Message) -> None:
        body = message.get("body", b"")
        if b"id: " in body:  # the client's window is full: nothing more goes through
            await never.wait()
        sent.append(body)

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    async with asyncio.timeout(5):
        await app(request().scope, receive, send)
    assert any(b"event: eventgate.disconnected" in body for body in sent)
    assert b"resume with Last-Event-ID" in b"".join(sent)
    assert stream.clients == 0
    await store.close()


async def test_past_the_client_limit_a_stream_is_refused_with_retry_after(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stream = EventStream(store, "urn:eventgate:test", max_clients=0)
    with pytest.raises(HTTPProblem) as refused:
        await stream.all(request())
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "5"
    await store.close()


@pytest.mark.parametrize(
    ("query", "limit"),
    [(b"type=" + b"*a" * 600 + b"b", b"200 characters"), (b"type=" + b"*a" * 9, b"8 '*'")],
)
async def test_a_type_filter_past_its_limits_is_refused_with_400_naming_the_limit(
    tmp_path: Path, query: bytes, limit: bytes
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stream = EventStream(store, "urn:eventgate:test")
    with pytest.raises(HTTPProblem) as refused:
        await stream.all(request(query))
    assert refused.value.status == 400 and limit.decode() in str(refused.value)
    await store.close()


def consumer_request(consumer: str | None) -> Request:
    named = [(b"x-eventgate-consumer", consumer.encode())] if consumer else []
    return Request({**request().scope, "headers": named})


async def test_a_consumer_past_its_streams_is_refused_with_429_and_others_are_not(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    stream = EventStream(store, "urn:eventgate:test", max_per_consumer=2)
    leave = asyncio.Event()

    async def receive() -> Message:
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    async def follow(consumer: str | None) -> None:
        app = await stream.all(consumer_request(consumer))
        await app(consumer_request(consumer).scope, receive, send)

    held = [asyncio.create_task(follow("browser")) for _ in range(2)]
    held += [asyncio.create_task(follow(None)) for _ in range(3)]  # anonymous: the process limit
    await asyncio.sleep(0.1)
    with pytest.raises(HTTPProblem) as refused:
        await stream.all(consumer_request("browser"))
    assert refused.value.status == 429 and "2 event streams" in str(refused.value)
    assert refused.value.headers["Retry-After"] == "5"
    held.append(asyncio.create_task(follow("other")))  # another consumer has its own
    await asyncio.sleep(0.1)
    assert stream.clients == 6 and stream.quota.held("other") == 1
    leave.set()
    await asyncio.gather(*held)
    assert stream.quota.held("browser") == 0
    await stream.all(consumer_request("browser"))  # its streams are free again
    await store.close()
