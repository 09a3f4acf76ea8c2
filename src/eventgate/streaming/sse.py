"""The log as Server-Sent Events: `GET /api/events` and `GET <item path>/events`.

Each event is one SSE message: `id:` its store position, `data:` the event as a structured
CloudEvent. A client resumes exactly after the last event it saw by sending its id back
(`Last-Event-ID`, as EventSource does on reconnect, or `?lastEventId=`); positions are the
store's, so that holds across server restarts. Filters: `?type=` (names or globs,
repeatable) and `?stream=` (stream ids, repeatable); the item route filters its stream.

Memory stays bounded whatever the client does: events are read in batches only as fast as
they are sent (live ones from the tail all clients share, streaming/tail.py), and a client
that does not take a message within `send_timeout` seconds is told why (a last
`eventgate.disconnected` event, if it still reads) and disconnected; it resumes with its
Last-Event-ID. A process takes `max_clients` clients, and each consumer (the gateway's
name for the API key) `max_per_consumer` streams of them (streaming/quota.py): past that a
stream is refused with 429. A comment line goes out every
`heartbeat` seconds (5; `?heartbeat=` 1 to 60) when nothing else does: below the gateway's
read timeout toward a service (10 s) and the idle timeouts of proxies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.errors import ConfigError
from eventgate.eventstore.model import RecordedEvent
from eventgate.eventstore.protocol import EventStore
from eventgate.http.problems import HTTPProblem
from eventgate.http.router import header
from eventgate.hub.hub import TypeFilter
from eventgate.metrics.families import STREAM_CLIENTS
from eventgate.streaming.cloudevents import structured
from eventgate.streaming.quota import MAX_STREAMS_PER_CONSUMER, StreamQuota, consumer_of
from eventgate.streaming.tail import Tail

__all__ = ["EVENTS_PATH", "EventStream"]

log = logging.getLogger("eventgate.streaming")
EVENTS_PATH = "/api/events"
MAX_FILTERS = 50
BATCH = 200
FRAMES_KEPT = 4096


class EventStream:
    """The endpoints of the event stream of one app, over its event store."""

    def __init__(
        self,
        store: EventStore,
        source: str,
        *,
        heartbeat: float = 5.0,
        send_timeout: float = 10.0,
        max_clients: int = 1000,
        max_per_consumer: int = MAX_STREAMS_PER_CONSUMER,
    ) -> None:
        self.store = store
        self.source = source
        self._heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.max_clients = max_clients
        self._frames: OrderedDict[int, bytes] = OrderedDict()
        self._tail = Tail(store)
        self.clients = 0
        """Clients connected now."""
        self.quota = StreamQuota(max_per_consumer)
        """The streams each consumer holds (SSE connections and WebSocket subscriptions)."""

    def follow(
        self, keep: Callable[[str, str], bool], after: int, heartbeat: float | None = None
    ) -> AsyncIterator[list[RecordedEvent]]:
        """The events after `after` that `keep(stream id, type)` accepts, in batches, forever:
        live ones decoded once for every client; an empty batch after `heartbeat` seconds
        without one."""
        return self._tail.follow(keep, after, BATCH, heartbeat)

    def frame(self, event: RecordedEvent) -> bytes:
        """The SSE message of `event`, encoded once for all the clients that follow it (the
        latest FRAMES_KEPT are kept)."""
        frame = self._frames.get(event.position)
        if frame is None:
            data = orjson.dumps(structured(self.source, event))
            frame = self._frames[event.position] = b"id: %d\ndata: %s\n\n" % (event.position, data)
            if len(self._frames) > FRAMES_KEPT:
                self._frames.popitem(last=False)
        return frame

    async def all(self, request: Request) -> ASGIApp:
        """Every event of the log (filtered by the query)."""
        return self._open(request, request.query_params.getlist("stream"))

    async def of_item(self, request: Request) -> ASGIApp:
        """The events of one resource item: its stream."""
        return self._open(request, [request.path_params["id"]])

    def _open(self, request: Request, streams: list[str]) -> ASGIApp:
        after = _resume_point(request)
        types = request.query_params.getlist("type")
        if len(types) + len(streams) > MAX_FILTERS:
            raise HTTPProblem(400, f"at most {MAX_FILTERS} type and stream filters")
        try:
            wanted = TypeFilter(types or None)
        except ConfigError as e:
            raise HTTPProblem(400, str(e)) from None
        heartbeat = _seconds(request, "heartbeat", self._heartbeat)
        if self.clients >= self.max_clients:
            raise HTTPProblem(503, "too many event stream clients; try again later",
                              headers={"Retry-After": "5"})  # fmt: skip
        consumer = consumer_of(request.scope["headers"])
        refusal = self.quota.refusal(consumer)
        if refusal is not None:
            raise HTTPProblem(429, refusal, headers={"Retry-After": "5"})
        chosen = frozenset(streams)

        def keep(stream_id: str, type_name: str) -> bool:
            return (not chosen or stream_id in chosen) and wanted(type_name)

        return _Stream(self, keep, after, heartbeat, consumer)


class _Stream:
    """One client's stream (an ASGI app)."""

    def __init__(
        self,
        owner: EventStream,
        keep: Callable[[str, str], bool],
        after: int,
        heartbeat: float,
        consumer: str | None,
    ) -> None:
        self._owner = owner
        self._consumer = consumer
        self._keep = keep
        self._after = after
        self._heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self._owner
        owner.clients += 1
        owner.quota.hold(self._consumer)
        STREAM_CLIENTS.labels("sse").inc()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),  # nginx and friends: do not buffer a stream
            ]})  # fmt: skip
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            await self._body(receive, send)
        finally:
            owner.clients -= 1
            owner.quota.release(self._consumer)
            STREAM_CLIENTS.labels("sse").dec()

    async def _body(self, receive: Receive, send: Send) -> None:
        """Batches as they come, a heartbeat when none came for a while; ends when the client
        leaves (noticed at the next send or heartbeat) or takes too long to take one."""
        gone = asyncio.create_task(_gone(receive))
        batches = self._owner.follow(self._keep, self._after, self._heartbeat)
        try:
            await self._write(send, b"retry: 2000\n\n")
            async for batch in batches:  # a store failure is raised here (a 500 was impossible)
                if gone.done():
                    break
                if not batch:
                    await self._write(send, b": heartbeat\n\n")
                    continue
                frames = b"".join(self._owner.frame(event) for event in batch)
                await self._write(send, frames)
        except _TooSlow:
            reason = f"the client took more than {self._owner.send_timeout:g} s to take events"
            log.info("event stream client disconnected: %s", reason)
            data = orjson.dumps({"reason": reason + "; resume with Last-Event-ID"})
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await send(_body(b"event: eventgate.disconnected\ndata: " + data + b"\n\n"))
        finally:
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)
            await batches.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send, body: bytes) -> None:
        try:
            async with asyncio.timeout(self._owner.send_timeout):
                await send(_body(body, more=True))
        except TimeoutError:
            raise _TooSlow from None


class _TooSlow(Exception):
    pass


def _body(body: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": more}


async def _gone(receive: Receive) -> None:
    """Returns when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _resume_point(request: Request) -> int:
    raw = header(request, b"last-event-id") or request.query_params.get("lastEventId") or "0"
    if not raw.isdigit() or len(raw) > 19:
        raise HTTPProblem(400, "Last-Event-ID must be an event id this stream sent (a number)")
    return int(raw)


def _seconds(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 60:
        raise HTTPProblem(400, f"{name} must be a number of seconds from 1 to 60")
    return value
