"""The gateway ASGI app: request ids, limits, authentication, scopes, rate limits, routing.

Checks run in a fixed order, each able to answer on its own:
request id -> URL size (414) -> authentication (401) -> route (404/405) -> scope (403)
-> rate limit (429) -> body size (413) -> upstream.

A WebSocket handshake goes through the same checks (its refusals are HTTP answers to the
handshake), on routes marked `websocket` only. Browsers cannot set headers on a WebSocket
or an EventSource, so on the event stream routes (a WebSocket handshake, or a GET or HEAD
of an SSE stream) the key may also come in `?api_key=`; the gateway takes it out of the
query before the upstream sees it. A key in a URL can land in the access logs of proxies on
the way (this gateway logs no URLs): give browsers a key that holds `read` only, over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import orjson
import uuid_utils
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.console import ConsolePages
from eventgate.gateway.config import Consumer, GatewayConfig
from eventgate.gateway.docs import DocsPages
from eventgate.gateway.routes import SAFE_METHODS, GatewayRoute, RouteTable
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.problems import problem
from eventgate.metrics.http import RequestMeter, route_label
from eventgate.tracing import spans as tracing

__all__ = [
    "KEY_HEADERS",
    "MAX_REQUEST_ID",
    "MAX_URL_BYTES",
    "METRICS_ROUTE",
    "QUERY_KEY",
    "REQUEST_ID_CHARACTERS",
    "Gateway",
    "takes_query_key",
]

KEY_HEADERS = ("x-api-key", "authorization")
"""Where a client's API key is read: X-API-Key, else `Authorization: Bearer KEY`."""
MAX_URL_BYTES = 8192
_KEY, _AUTHORIZATION = (name.encode() for name in KEY_HEADERS)
_CONSUMER = CONSUMER_HEADER.encode()
_REQUEST_ID_HEADER = REQUEST_ID_HEADER.encode()
REQUEST_ID_CHARACTERS = "A-Za-z0-9._:/+=-"
MAX_REQUEST_ID = 128
"""A client's X-Request-ID is kept when it is 1 to 128 of these characters (a regex class)."""
_REQUEST_ID = re.compile(f"^[{REQUEST_ID_CHARACTERS}]{{1,{MAX_REQUEST_ID}}}$")
_STRIPPED = {_CONSUMER, _REQUEST_ID_HEADER}
_STARTS = {"http.response.start", "websocket.accept", "websocket.http.response.start"}
QUERY_KEY = "api_key"
"""Where a request to an event stream may carry the key instead (browsers cannot set
headers on a WebSocket or an EventSource): see `takes_query_key`."""
_READS = frozenset({"GET", "HEAD"})
METRICS_ROUTE = GatewayRoute(frozenset({"GET", "HEAD"}), "/metrics", "metrics", scope="admin")
"""The process's Prometheus metrics (metrics/), behind the admin scope when keys are set."""
Admission = tuple[Response | None, "Consumer | None", GatewayRoute | None, dict[str, str]]


class Gateway:
    """The public front, before upstreams in this process (`up`) or remote ones reached over
    HTTP (`serve gateway`: gateway/upstream.py); the checks are the same."""

    def __init__(
        self,
        table: RouteTable,
        upstreams: Mapping[str, ASGIApp],
        config: GatewayConfig,
        openapi: Mapping[str, Any],
        asyncapi: Mapping[str, Any] | None = None,
        metrics: ASGIApp | None = None,
    ) -> None:
        missing = {r.upstream for r in table.routes} - set(upstreams)
        if missing:
            raise ValueError(f"routes name unknown upstreams {sorted(missing)}")
        if metrics is not None:  # `/metrics`, answered here with the admin scope (metrics/)
            table = RouteTable([*table.routes, METRICS_ROUTE])
            upstreams = {**upstreams, METRICS_ROUTE.upstream: metrics}
        self._table = table
        self._upstreams = upstreams
        self._config = config
        self._keys = {c.key_sha256: c for c in config.consumers}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._openapi = orjson.dumps(openapi)
        self._asyncapi = orjson.dumps(asyncapi) if asyncapi is not None else None
        self._docs = DocsPages(str(openapi.get("info", {}).get("title", "eventgate API")))
        self._console = ConsolePages()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        meter = RequestMeter(send)
        try:
            await self._handle(scope, receive, meter)
        finally:
            meter.done("gateway", scope.get("method", "GET"))

    async def _handle(self, scope: Scope, receive: Receive, meter: RequestMeter) -> None:
        send = meter.send
        socket = scope["type"] == "websocket"
        request_headers = dict(scope["headers"])
        request_id = _request_id(request_headers)
        answer, consumer, route, limit_headers = self._admit(scope, request_headers)
        meter.route = route_label(route.pattern if route else None, scope["path"])
        tracing.name_request(scope.get("method", "GET"), meter.route)
        extra = [(_REQUEST_ID_HEADER, request_id)]
        extra += [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] in _STARTS:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if answer is None and socket and route is not None and not route.websocket:
            answer = problem(404, f"no WebSocket at {scope['path']}")
        if answer is None and not socket:
            answer, receive = await self._limit_body(scope, request_headers, receive)
        if answer is not None or route is None:
            await (answer or problem(404))(scope, receive, send_with_headers)
            return
        headers = [(k, v) for k, v in scope["headers"] if k not in _STRIPPED]
        headers.append((_REQUEST_ID_HEADER, request_id))
        if consumer is not None:
            headers.append((_CONSUMER, consumer.name.encode()))
        upstream = self._upstreams[route.upstream]
        forwarded = {**scope, "headers": headers}
        if takes_query_key(route, scope.get("method", "GET")):
            forwarded["query_string"] = _query_key(scope)[1]
        await upstream(forwarded, receive, send_with_headers)

    def _admit(self, scope: Scope, headers: Mapping[bytes, bytes]) -> Admission:
        """Every check before the body: an answer (or None to go on), who asks, where to,
        and the rate-limit headers."""
        path, method = scope["path"], scope.get("method", "GET")  # a WebSocket's: GET
        if len(path) + len(scope.get("query_string", b"")) > MAX_URL_BYTES:
            return problem(414, f"the URL is longer than {MAX_URL_BYTES} bytes"), None, None, {}
        if path == "/openapi.json" and method in {"GET", "HEAD"}:
            return Response(self._openapi, media_type="application/json"), None, None, {}
        if path == "/asyncapi.json" and method in {"GET", "HEAD"} and self._asyncapi:
            return Response(self._asyncapi, media_type="application/json"), None, None, {}
        if path.startswith("/docs") and method in {"GET", "HEAD"}:
            page = self._docs.answer(path)
            if page is not None:
                return page, None, None, {}
        if path.startswith("/console") and method in {"GET", "HEAD"}:
            page = self._console.answer(path)  # no data in it: each of its calls needs admin
            if page is not None:
                return page, None, None, {}
        consumer = None
        route = self._table.match(method, path)
        if self._config.auth_enabled:
            in_query = _query_key(scope)[0] if takes_query_key(route, method) else None
            consumer = self._authenticate(headers, in_query)
            if consumer is None:  # the route (if any) is kept: metrics label the refusal by it
                answer = problem(401, "send a valid API key", {"WWW-Authenticate": "Bearer"})
                return answer, None, route, {}
        if route is None:
            allowed = self._table.allowed(path)
            if not allowed:
                return problem(404, f"no resource at {path}", instance=path), consumer, None, {}
            detail = f"{method} is not allowed here"
            answer = problem(405, detail, {"Allow": ", ".join(allowed)}, path,
                             message="Http Method not supported")  # fmt: skip
            return answer, consumer, None, {}
        needed = route.needs(method)
        if consumer is not None and not consumer.holds(needed):
            answer = problem(403, f"this needs the {needed!r} scope", instance=path)
            return answer, consumer, route, {}
        limited, limit_headers = self._rate_limit(consumer)
        return limited, consumer, route, limit_headers

    def _authenticate(
        self, headers: Mapping[bytes, bytes], query_key: bytes | None = None
    ) -> Consumer | None:
        key = headers.get(_KEY)
        authorization = headers.get(_AUTHORIZATION, b"")
        if key is None and authorization[:7].lower() == b"bearer ":
            key = authorization[7:].strip()
        if key is None:
            key = query_key
        if not key:
            return None
        digest = hashlib.sha256(key).hexdigest()
        for known, consumer in self._keys.items():
            if hmac.compare_digest(known, digest):
                return consumer
        return None

    def _rate_limit(self, consumer: Consumer | None) -> tuple[Response | None, dict[str, str]]:
        """Count this request against the consumer's limit: a 429 past it (or None), and the
        RateLimit-* headers either way."""
        if consumer is None or consumer.rate_limit is None:
            return None, {}
        limit = consumer.rate_limit
        allowed = self._limiter.hit(limit, consumer.name)
        stats = self._limiter.get_window_stats(limit, consumer.name)
        reset = str(max(1, round(stats.reset_time - time.time())))
        headers = {
            "RateLimit-Limit": str(limit.amount),
            "RateLimit-Remaining": str(max(stats.remaining, 0)),
            "RateLimit-Reset": reset,
        }
        if allowed:
            return None, headers
        return problem(429, f"rate limit {limit} exceeded", {"Retry-After": reset}), headers

    async def _limit_body(
        self, scope: Scope, headers: Mapping[bytes, bytes], receive: Receive
    ) -> tuple[Response | None, Receive]:
        """413 past the body limit; bodies without Content-Length are buffered to count them."""
        limit = self._config.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return problem(400, "malformed Content-Length"), receive
            if int(length) > limit:
                return problem(413, f"the body is larger than {limit} bytes"), receive
            return None, receive
        if scope["method"] in SAFE_METHODS:
            return None, receive
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return problem(413, f"the body is larger than {limit} bytes"), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        async def replay() -> Message:
            nonlocal body
            message, body = {"type": "http.request", "body": body, "more_body": False}, b""
            return message

        return None, replay


def takes_query_key(route: GatewayRoute | None, method: str) -> bool:
    """Whether a request to `route` may carry its key in `?api_key=`: a WebSocket handshake
    or a read of an event stream (the routes a browser cannot set headers on)."""
    return route is not None and (route.stream or route.websocket) and method in _READS


def _query_key(scope: Scope) -> tuple[bytes | None, bytes]:
    """A request's `?api_key=` (None without one), and its query string without it."""
    query: bytes = scope.get("query_string", b"")
    if QUERY_KEY.encode() not in query:
        return None, query
    key, kept = None, []
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == QUERY_KEY.encode():
            key = unquote_plus(value.decode("latin-1")).encode("latin-1")
        else:
            kept.append(part)
    return key, b"&".join(kept)


def _request_id(headers: Mapping[bytes, bytes]) -> bytes:
    """The client's request id when it is well formed, else a new one."""
    given = headers.get(_REQUEST_ID_HEADER)
    if given is not None and _REQUEST_ID.match(given.decode("latin-1")):
        return given
    return str(uuid_utils.uuid4()).encode()
