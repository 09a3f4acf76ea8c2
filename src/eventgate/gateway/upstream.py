"""A command or query service in another process, reached over HTTP by the gateway.

One pooled `httpx.AsyncClient` per upstream (keep-alive connections, a bounded pool), a
timeout on every request, and the base URLs tried in turn. A request is retried on the
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

import httpx
from starlette.types import Message, Receive, Scope, Send

from eventgate.gateway.internal import INTERNAL_HEADER
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.problems import problem

__all__ = ["IDEMPOTENT_METHODS", "RemoteUpstream"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods retried after a request was sent. Not PUT and DELETE: eventgate maps them to
commands, and each run of a command appends; with an Idempotency-Key any method is."""
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length"}
)  # fmt: skip
_RESPONSE_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "date", "server"})
"""Hop-by-hop headers, and those the gateway's own server sets."""
_GATEWAY_HEADERS = frozenset({CONSUMER_HEADER.encode(), REQUEST_ID_HEADER.encode()})
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
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=4.0,  # below uvicorn's 5 s: never reuse one it is closing
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return  # the client left mid-upload: nobody to answer, nothing to forward
        headers = self._headers(scope)
        method = scope["method"]
        idempotent = method in IDEMPOTENT_METHODS or any(k == "idempotency-key" for k, _ in headers)
        path = scope.get("raw_path") or scope["path"].encode()
        target = path.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        first = next(self._turn)
        failure = ""
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        for attempt in range(self._retries + 1):
            url = self.urls[(first + attempt) % len(self.urls)]
            request = self._client.build_request(method, url + target, headers=headers,
                                                 content=body)  # fmt: skip
            try:
                response = await self._client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                failure = failure or "unreachable"  # nothing was sent: try the next one
                _log.warning("%s %s: %s unreachable (%s)", method, request_id, url, _why(e))
            except httpx.TimeoutException as e:
                failure = "timeout"
                _log.warning("%s %s: %s did not answer in time (%s)", method, request_id,
                             url, _why(e))  # fmt: skip
                if not idempotent:
                    break
            except httpx.TransportError as e:
                failure = "broken" if failure != "timeout" else failure
                _log.warning("%s %s: %s broke off (%s)", method, request_id, url, _why(e))
                if not idempotent:
                    break
            else:
                if response.status_code == 401:  # the services answer 401 to one thing only
                    await response.aclose()
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

    def _headers(self, scope: Scope) -> list[tuple[str, str]]:
        named = {  # headers the Connection header names are hop-by-hop too (RFC 9110 7.6.1)
            token.strip().lower().encode("latin-1")
            for k, v in scope["headers"]
            if k == b"connection"
            for token in v.decode("latin-1").split(",")
        }
        named -= _GATEWAY_HEADERS  # a client cannot have the gateway's own headers dropped
        dropped = _HOP_BY_HOP | named | {INTERNAL_HEADER.encode()}
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in dropped
        ]
        client = scope.get("client")
        if client:
            headers.append(("x-forwarded-for", client[0]))
        if self._token is not None:
            headers.append((INTERNAL_HEADER, self._token))
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


async def _relay(response: httpx.Response, send: Send) -> None:
    try:
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.multi_items()
            if k.lower() not in _RESPONSE_DROPPED
        ]
        start: Message = {"type": "http.response.start", "status": response.status_code,
                          "headers": headers}  # fmt: skip
        await send(start)
        async for chunk in response.aiter_raw():
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await response.aclose()
