"""The shared secret between the gateway and the services behind it.

A command or query service run on its own (`eventgate serve commands|queries`) trusts the
consumer the gateway names in `x-eventgate-consumer`, so it must answer the gateway only.
With `EVENTGATE_INTERNAL_TOKEN` set (the same value for every process of a deployment),
the gateway sends the token with each request and the services refuse any request
without it: a client that reaches a service directly cannot pose as a consumer.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.http.problems import problem

__all__ = ["INTERNAL_HEADER", "InternalOnly"]

INTERNAL_HEADER = "x-eventgate-internal"
_HEADER = INTERNAL_HEADER.encode()


class InternalOnly:
    """`app`, behind a check of the internal token (401 problem without it)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        if len(token) < 16:
            raise ValueError("the internal token must be at least 16 characters")
        self._app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(_HEADER, b"")
            if not hmac.compare_digest(given, self._token):
                answer = problem(401, "this service answers the eventgate gateway only")
                await answer(scope, receive, send)
                return
        await self._app(scope, receive, send)
