"""The shared secret between the gateway and the services behind it.

A command or query service run on its own (`eventgate serve commands|queries`) trusts the
consumer the gateway names in `x-eventgate-consumer`, so it must answer the gateway only.
With `EVENTGATE_INTERNAL_TOKEN` set (the same value for every process of a deployment),
the gateway sends the token with each request and the services refuse any request
without it: a client that reaches a service directly cannot pose as a consumer.

Each service also answers `GET /_eventgate/health` (behind the token when there is one), for
the active health checks of a gateway in front of several instances (Envoy, APISIX: see
gateway/export/): 200 as long as the process serves HTTP. No route of the gateway leads there.
"""

from __future__ import annotations

import hmac

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.http.problems import problem

__all__ = ["HEALTH_PATH", "INTERNAL_HEADER", "InternalOnly", "WithHealth"]

INTERNAL_HEADER = "x-eventgate-internal"
_HEADER = INTERNAL_HEADER.encode()
HEALTH_PATH = "/_eventgate/health"
_READ = ("GET", "HEAD")
_HEALTHY = Response(b'{"status": "ok"}', 200, {"Cache-Control": "no-store"}, "application/json")


class InternalOnly:
    """`app`, behind a check of the internal token (401 problem without it)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the internal token must be at least 16 characters")
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):  # a handshake is refused as HTTP too
            given = dict(scope["headers"]).get(_HEADER, b"")
            if not hmac.compare_digest(given, self._token):
                answer = problem(401, "this service answers the eventgate gateway only")
                await answer(scope, receive, send)
                return
        await self._app(scope, receive, send)


class WithHealth:
    """`app`, and 200 to GET or HEAD on HEALTH_PATH: the process is up and serving HTTP.
    It does not touch the database: one dead instance is what a gateway must route around,
    a dead database fails every instance alike."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == HEALTH_PATH and scope["method"] in _READ:
            await _HEALTHY(scope, receive, send)
            return
        await self._app(scope, receive, send)
