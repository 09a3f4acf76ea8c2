"""A command or query service in another process, reached over HTTP by the gateway.

One pooled aiohttp `ClientSession` per upstream (keep-alive connections, a bounded pool, no
cookie jar: the gateway forwards for many clients), timeouts on every request, and the base
URLs tried in turn. aiohttp, not httpx: httpx's pool spends CPU quadratic in the requests
waiting on it (encode/httpx#3215), which held a gateway with 64 busy clients to ~300 req/s
on 2 cores (docs/decisions/0005-gateway-client.md). A request is retried on the
next URL only when that cannot apply it twice: when the connection was never made (nothing
was sent), or when the request only reads (GET, HEAD, OPTIONS) or carries an
Idempotency-Key (which the command service answers once). PUT and DELETE are commands
here, and a command run twice appends twice: without a key they are not retried once sent.
A status code is an answer and is passed on as is, but a 401: the services answer it only
to a request without the right internal token (a configuration error), so it becomes a 502
and a log line. Only transport failures are retried, ending in 502 (or 504 if any attempt
timed out), each logged with the request id. The gateway has already bounded the body and
set X-Request-ID and the consumer header; they go on with the other end-to-end headers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from eventgate.gateway.internal import INTERNAL_HEADER
from eventgate.gateway.sockets import relay_socket
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.problems import problem
from eventgate.tracing import spans as tracing

__all__ = ["IDEMPOTENT_METHODS", "RemoteUpstream"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods retried after a request was sent. Not PUT and DELETE: eventgate maps them to
commands, and each run of a command appends; with an Idempotency-Key any method is."""
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)  # fmt: skip
_RESPONSE_DROPPED = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"date", b"server"}
)
"""Hop-by-hop headers, and those the gateway's own server sets."""
_GATEWAY_HEADERS = frozenset({CONSUMER_HEADER.encode(), REQUEST_ID_HEADER.encode()})
_NOT_ADDED = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
"""Headers aiohttp would add of its own: the client's are forwarded, none are made up."""
_BACKOFF = 0.05
_log = logging.getLogger(__name__)


class RemoteUpstream:
    """An ASGI app that forwards each request to one of `urls` (`http://host:port`)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        retries: int = 2,
        internal_token: str | None = None,
        max_connections: int = 256,
    ) -> None:
        if not urls:
            raise ValueError("an upstream needs at least one URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} is not a service URL like http://10.0.0.5:8001")
        self.urls = [url.rstrip("/") for url in urls]
        self._turn = itertools.cycle(range(len(self.urls)))
        self._retries = retries
        self._token = internal_token
        self._limit = max_connections
        self._send_timeout = timeout
        # connect: waiting for a pooled connection and making one; sock_read: any silence
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=min(timeout, 2.0), sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use (aiohttp wants a running loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                keepalive_timeout=4.0,  # below uvicorn's 5 s: never reuse one it is closing
                use_dns_cache=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_NOT_ADDED,
                trust_env=False,
            )
            # aiohttp resends PUT and DELETE once when a kept-alive connection breaks; they
            # are commands here, retried only as __call__ decides. No public switch: the flag
            # aiohttp's own test utilities set (pinned version; test_remote_upstream checks).
            self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left mid-upload: nobody to answer, nothing to forward
        headers = self._headers(scope)
        method = scope["method"]
        idempotent = method in IDEMPOTENT_METHODS or "idempotency-key" in headers
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        first = next(self._turn)
        failure = ""
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        client = self._client()
        for attempt in range(self._retries + 1):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                response = await client.request(
                    method,
                    URL(url + target, encoded=True),  # the path exactly as the client sent it
                    headers=headers,
                    data=body if body or method not in IDEMPOTENT_METHODS else None,
                    allow_redirects=False,
                )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                failure = failure or "unreachable"  # nothing was sent: try the next one
                _log.warning("%s %s: %s unreachable (%s)", method, request_id, url, _why(e))
            except TimeoutError as e:
                failure = "timeout"
                _log.warning("%s %s: %s did not answer in time (%s)", method, request_id,
                             url, _why(e))  # fmt: skip
                if not idempotent:
                    break
            except aiohttp.ClientError as e:
                failure = "broken" if failure != "timeout" else failure
                _log.warning("%s %s: %s broke off (%s)", method, request_id, url, _why(e))
                if not idempotent:
                    break
            else:
                if response.status == 401:  # the services answer 401 to one thing only
                    response.release()
                    _log.error("%s refused the gateway: is EVENTGATE_INTERNAL_TOKEN the same"
                               " for every process?", url)  # fmt: skip
                    answer = problem(502, "the service behind the gateway refused it")
                    await answer(scope, receive, send)
                    return
                await _relay(response, send)
                return
            if attempt < self._retries:
                await asyncio.sleep(_BACKOFF * attempt)
        if failure == "timeout":
            answer = problem(504, "the service behind the gateway did not answer in time")
        else:
            answer = problem(502, "the service behind the gateway cannot be reached")
        await answer(scope, receive, send)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket, relayed to the first instance that takes it (gateway/sockets.py)."""
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        first = next(self._turn)
        urls = self.urls[first:] + self.urls[:first]
        await relay_socket(self._client(), urls, target, self._headers(scope), scope, receive,
                           send, self._send_timeout)  # fmt: skip

    def _headers(self, scope: Scope) -> CIMultiDict[str]:
        named = {  # headers the Connection header names are hop-by-hop too (RFC 9110 7.6.1)
            token.strip().lower().encode("latin-1")
            for k, v in scope["headers"]
            if k == b"connection"
            for token in v.decode("latin-1").split(",")
        }
        named -= _GATEWAY_HEADERS  # a client cannot have the gateway's own headers dropped
        dropped = _HOP_BY_HOP | named | {INTERNAL_HEADER.encode()}
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in dropped
        )
        client = scope.get("client")
        if client:
            headers.add("x-forwarded-for", client[0])
        if self._token is not None:
            headers.add(INTERNAL_HEADER, self._token)
        for name in tracing.METADATA_KEYS:  # the gateway's span is the upstream's parent,
            headers.popall(name, None)  # and a client's tracestate never rides on a new trace
        headers.update(tracing.carried())
        return headers


def _why(error: Exception) -> str:
    return str(error) or type(error).__name__


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; None when the client disconnected before sending it all."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _relay(response: aiohttp.ClientResponse, send: Send) -> None:
    try:
        headers = [(k, v) for k, v in response.raw_headers if k.lower() not in _RESPONSE_DROPPED]
        start: Message = {"type": "http.response.start", "status": response.status,
                          "headers": headers}  # fmt: skip
        await send(start)
        async for chunk in response.content.iter_any():
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        response.release()
