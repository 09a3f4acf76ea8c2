"""The log over WebSocket: `GET /api/events/ws`, several filtered subscriptions on one
connection (the protocol is in docs/http.md, "WebSocket").

Client to server, JSON text frames: `{"type": "subscribe", "subscription": ID, "types":
[globs], "streams": [ids], "after": POSITION}` (all but the id optional) and `{"type":
"unsubscribe", "subscription": ID}`. Server to client: `subscribed` and `unsubscribed`
(with the id), `{"type": "event", "subscription": ID, "event": CLOUDEVENT}` for each event
of each subscription in store order (the CloudEvent exactly as SSE's `data:`; its
`sequence` is the position to resume `after`), and `{"type": "error", "subscription":
ID-or-null, "problem": {type, title, status, detail}}` for a message the server cannot take;
the connection stays open after an error. An event whose message would be over MAX_EVENT
bytes is not sent: its subscription gets an `error` (413) with the event's `sequence`
instead, and goes on (the stores take events of any size, and a client or relay that cannot
take a message closes the connection, so it would fail at the same event forever).

A connection may send MESSAGE_RATE messages a second, MESSAGE_BURST at once (a token
bucket): one past that is answered with a 429 error and not taken, and MESSAGE_BURST such
refusals in a row close the connection with 1008 (type filters cost a regex compile each).

The bounds are the SSE endpoint's: each subscription reads the store only as fast as its
events are sent; the connection counts against the client limit it shares with SSE, and
each subscription (one at least) against its consumer's streams (streaming/quota.py); a
client that does not take a frame within `send_timeout` seconds is closed. Close codes
(RFC 6455 and the IANA registry):

- 1008 policy violation: the client took more than `send_timeout` s to take a frame, or
  kept sending messages past the rate
- 1009 message too big: a client message over MAX_MESSAGE bytes
- 1011 internal error: the server could not read the store
- 1013 try again later: past the client limit, or the consumer's (at once, after the
  handshake); a subscription past the consumer's limit is an error (429) instead
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.errors import ConfigError
from eventgate.eventstore.model import RecordedEvent
from eventgate.http.problems import HTTPProblem, problem_body
from eventgate.hub.hub import TypeFilter
from eventgate.metrics.families import STREAM_CLIENTS
from eventgate.streaming.cloudevents import structured
from eventgate.streaming.quota import consumer_of
from eventgate.streaming.sse import EVENTS_PATH, FRAMES_KEPT, MAX_FILTERS, EventStream

__all__ = [
    "EVENTS_SOCKET_PATH",
    "MAX_EVENT",
    "MAX_MESSAGE",
    "MAX_SUBSCRIPTIONS",
    "MESSAGE_BURST",
    "MESSAGE_RATE",
    "PROTOCOL",
    "EventSocket",
]

log = logging.getLogger("eventgate.streaming")
EVENTS_SOCKET_PATH = EVENTS_PATH + "/ws"
PROTOCOL = "eventgate.events.v1"
"""The subprotocol the server selects when the client offers it."""
MAX_MESSAGE = 64 * 1024
"""Bytes of one client message (uvicorn's ws_max_size is the same: cli/serving.py)."""
MAX_EVENT = 16 * 1024 * 1024
"""Bytes of one `event` message the server sends (serve gateway's relay takes as many)."""
MAX_SUBSCRIPTIONS = 32
MAX_ID = 64
MESSAGE_RATE = 10.0
MESSAGE_BURST = 2 * MAX_SUBSCRIPTIONS
"""A client may (re)subscribe all it may have at once, twice."""
TOO_SLOW, TOO_FAST, TOO_BIG, FAILED, TRY_LATER = 1008, 1008, 1009, 1011, 1013


class EventSocket:
    """The WebSocket endpoint of the event stream of one app (an ASGI app), beside `events`:
    its store, source, send timeout and client limit (the count is shared)."""

    def __init__(self, events: EventStream, *, max_subscriptions: int = MAX_SUBSCRIPTIONS):
        self.events = events
        self.max_subscriptions = max_subscriptions
        self._encoded: OrderedDict[int, str] = OrderedDict()

    def cloudevent(self, event: RecordedEvent) -> str:
        """`event` as structured CloudEvent JSON, encoded once for all the subscriptions
        that carry it (the latest FRAMES_KEPT are kept)."""
        text = self._encoded.get(event.position)
        if text is None:
            text = orjson.dumps(structured(self.events.source, event)).decode()
            self._encoded[event.position] = text
            if len(self._encoded) > FRAMES_KEPT:
                self._encoded.popitem(last=False)
        return text

    async def plain(self, request: Request) -> ASGIApp:
        """A GET without the upgrade: 426, with the way to ask."""
        raise HTTPProblem(426, f"{EVENTS_SOCKET_PATH} is a WebSocket: send the upgrade",
                          headers={"Upgrade": "websocket"})  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or (await receive())["type"] != "websocket.connect":
            return
        offered = scope.get("subprotocols") or []
        chosen = PROTOCOL if PROTOCOL in offered else None
        await send({"type": "websocket.accept", "subprotocol": chosen})
        events = self.events
        consumer = consumer_of(scope["headers"])
        refusal = events.quota.refusal(consumer)
        if events.clients >= events.max_clients:
            refusal = "too many event stream clients; try again later"
        if refusal is not None:
            await _close(send, TRY_LATER, refusal)
            return
        events.clients += 1
        connection = _Connection(self, receive, send, consumer)
        events.quota.hold(consumer)
        STREAM_CLIENTS.labels("websocket").inc()
        try:
            await connection.run()
        finally:
            STREAM_CLIENTS.labels("websocket").dec()
            events.clients -= 1
            events.quota.release(consumer, connection.streams)


class _Refused(Exception):
    """A client message the server cannot take: answered with an error, the connection
    stays open."""

    def __init__(self, status: int, detail: str, subscription: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.subscription = subscription


class _TooSlow(Exception):
    pass


class _TooFast(Exception):
    pass


class _TokenBucket:
    """`rate` tokens a second, at most `burst` kept."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass(frozen=True)
class _Subscribe:
    subscription: str
    types: list[str]
    streams: frozenset[str]
    after: int


class _Connection:
    """One client's connection: its subscriptions, each a task that reads the store and
    sends; every send goes through one lock with the send timeout."""

    def __init__(
        self, socket: EventSocket, receive: Receive, send: Send, consumer: str | None
    ) -> None:
        self._socket = socket
        self._consumer = consumer
        self._quota = socket.events.quota
        self._receive = receive
        self._asgi_send = send
        self._timeout = socket.events.send_timeout
        self._lock = asyncio.Lock()
        self._subscriptions: dict[str, asyncio.Task[None]] = {}
        self._ended: asyncio.Future[tuple[int, str] | None] = asyncio.Future()
        self._bucket = _TokenBucket(MESSAGE_RATE, MESSAGE_BURST)
        self._refused_in_a_row = 0

    @property
    def streams(self) -> int:
        """The streams it holds of its consumer's quota: one per subscription, one at least."""
        return max(1, len(self._subscriptions))

    async def run(self) -> None:
        receiving = asyncio.create_task(self._receive_all())
        receiving.add_done_callback(self._ended_by)
        try:
            await self._ended
        finally:
            tasks = [receiving, *self._subscriptions.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        closing = self._ended.result()
        if closing is not None:
            log.info("event socket closed: %s", closing[1])
            await _close(self._asgi_send, *closing)

    def _end(self, closing: tuple[int, str] | None) -> None:
        if not self._ended.done():
            self._ended.set_result(closing)

    async def _receive_all(self) -> None:
        try:
            while True:
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    self._end(None)
                    return
                text = message.get("text")
                if text is not None and len(text.encode()) > MAX_MESSAGE:
                    self._end((TOO_BIG, f"a message is at most {MAX_MESSAGE} bytes"))
                    return
                try:
                    self._count_against_the_rate()
                    await self._take(text)
                except _TooFast:
                    self._end((TOO_FAST, f"more than {MESSAGE_BURST} messages past the rate"
                                         f" of {MESSAGE_RATE:g} a second"))  # fmt: skip
                    return
                except _Refused as e:
                    problem = problem_body(e.status, e.detail)
                    await self._send({"type": "error", "subscription": e.subscription,
                                      "problem": problem})  # fmt: skip
        except _TooSlow:
            self._end(self._too_slow())
        except OSError:  # the server's ClientDisconnected: gone while we sent
            self._end(None)

    def _count_against_the_rate(self) -> None:
        if self._bucket.take():
            self._refused_in_a_row = 0
            return
        self._refused_in_a_row += 1
        if self._refused_in_a_row >= MESSAGE_BURST:
            raise _TooFast
        detail = f"at most {MESSAGE_RATE:g} messages a second ({MESSAGE_BURST} at once)"
        raise _Refused(429, detail + "; this one was not taken")

    async def _take(self, text: str | None) -> None:
        if text is None:
            raise _Refused(400, "send JSON text frames, not binary ones")
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _Refused(400, "the message is not JSON") from None
        if not isinstance(message, dict):
            raise _Refused(422, "a message is a JSON object with a type")
        subscription = message.get("subscription")
        kind = message.get("type")
        if kind == "subscribe":
            await self._subscribe(_parse_subscribe(message))
        elif kind == "unsubscribe":
            await self._unsubscribe(_subscription_id(subscription))
        else:
            known = subscription if isinstance(subscription, str) else None
            raise _Refused(422, "type must be subscribe or unsubscribe", known)

    async def _subscribe(self, wanted: _Subscribe) -> None:
        sid = wanted.subscription
        if sid in self._subscriptions:
            raise _Refused(409, f"subscription {sid!r} exists: choose another id", sid)
        if len(self._subscriptions) >= self._socket.max_subscriptions:
            detail = f"at most {self._socket.max_subscriptions} subscriptions per connection"
            raise _Refused(422, detail, sid)
        try:
            accepts = TypeFilter(wanted.types or None)
        except ConfigError as e:
            raise _Refused(422, str(e), sid) from None
        more = bool(self._subscriptions)  # the first one takes the connection's stream
        refusal = self._quota.refusal(self._consumer) if more else None
        if refusal is not None:
            raise _Refused(429, refusal, sid)
        self._quota.hold(self._consumer, int(more))
        try:
            await self._send({"type": "subscribed", "subscription": sid})  # before its events
        except BaseException:
            self._quota.release(self._consumer, int(more))
            raise
        task = asyncio.create_task(self._follow(sid, accepts, wanted.streams, wanted.after))
        task.add_done_callback(self._ended_by)
        self._subscriptions[sid] = task

    async def _unsubscribe(self, sid: str) -> None:
        task = self._subscriptions.pop(sid, None)
        if task is None:
            raise _Refused(404, f"no subscription {sid!r} on this connection", sid)
        if self._subscriptions:
            self._quota.release(self._consumer)
        async with self._lock:  # it sends only under the lock: never cut mid-frame
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._send({"type": "unsubscribed", "subscription": sid})

    async def _follow(
        self, sid: str, accepts: TypeFilter, streams: frozenset[str], after: int
    ) -> None:
        def keep(stream_id: str, type_name: str) -> bool:
            return (not streams or stream_id in streams) and accepts(type_name)

        head = '{"type":"event","subscription":' + orjson.dumps(sid).decode() + ',"event":'
        batches = self._socket.events.follow(keep, after)  # live events: the shared tail
        try:
            async for events in batches:
                for event in events:
                    text = head + self._socket.cloudevent(event) + "}"
                    if len(text) > MAX_EVENT // 4 and len(text.encode()) > MAX_EVENT:
                        await self._send(_too_big(sid, event.position))
                    else:
                        await self._send_text(text)
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    def _ended_by(self, task: asyncio.Task[None]) -> None:
        """A task of the connection ended by itself (the receiver, or a subscription's
        reader): why decides how the connection closes."""
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, _TooSlow):
            self._end(self._too_slow())
        elif isinstance(error, OSError) or error is None:
            self._end(None)
        else:
            log.error("an event socket failed", exc_info=error)
            self._end((FAILED, "the server could not read the events; resume with after"))

    def _too_slow(self) -> tuple[int, str]:
        took = f"the client took more than {self._timeout:g} s to take events"
        return TOO_SLOW, took + "; resume with after"

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_text(orjson.dumps(message).decode())

    async def _send_text(self, text: str) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._asgi_send({"type": "websocket.send", "text": text})
            except TimeoutError:
                raise _TooSlow from None


def _too_big(sid: str, position: int) -> dict[str, Any]:
    detail = (f"event {position} is over the {MAX_EVENT // 2**20} MiB a WebSocket message"
              " carries: read it from GET /api/events, or go on without it")  # fmt: skip
    return {"type": "error", "subscription": sid, "sequence": str(position),
            "problem": problem_body(413, detail)}  # fmt: skip


def _subscription_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise _Refused(422, f"subscription must be a string of 1 to {MAX_ID} characters")
    return value


def _parse_subscribe(message: dict[str, Any]) -> _Subscribe:
    sid = _subscription_id(message.get("subscription"))
    types, streams = _strings(message, "types", sid), _strings(message, "streams", sid)
    if len(types) + len(streams) > MAX_FILTERS:
        raise _Refused(422, f"at most {MAX_FILTERS} types and streams", sid)
    return _Subscribe(sid, types, frozenset(streams), _position(message.get("after", 0), sid))


def _strings(message: dict[str, Any], name: str, sid: str) -> list[str]:
    value = message.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Refused(422, f"{name} must be a list of non-empty strings", sid)
    return value


def _position(value: object, sid: str) -> int:
    """`after`: a position as a number, or as the string a CloudEvent's sequence is."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    raise _Refused(422, "after must be the sequence of an event this stream sent (a number)", sid)


async def _close(send: Send, code: int, reason: str) -> None:
    """Close with `code` and `reason`, as far as the client still takes frames."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await send({"type": "websocket.close", "code": code, "reason": reason})
