"""A lean ASGI router for the services: (path template, methods) -> endpoint, errors as
problem+json.

Starlette's application and router do the same through a middleware stack, per-route
objects and exception-handler wrappers that cost about a third of a cached GET here
(docs/benchmarks.md). This keeps Starlette's `Request` and path syntax (`compile_path`)
and drops the layers: one regex per route, one `try` around the endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.errors import EventgateError
from eventgate.http.problems import HTTPProblem, problem, render_error, unavailable
from eventgate.outages import unreachable

__all__ = ["Endpoint", "Router", "header"]

Endpoint = Callable[[Request], Awaitable[ASGIApp]]
logger = logging.getLogger(__name__)


def header(request: Request, name: bytes) -> str | None:
    """The request header `name` (lower case), through one dict per request: Starlette's
    `request.headers` scans and lower-cases the whole list on every lookup."""
    headers = request.scope.get("eventgate.headers")
    if headers is None:
        headers = request.scope["eventgate.headers"] = dict(request.scope["headers"])
    value: bytes | None = headers.get(name)
    return None if value is None else value.decode("latin-1")


class Router:
    """Routes HTTP requests to endpoints that return an ASGI response; 404 and 405 (with
    Allow) for what no route takes, a 500 problem (logged) for what an endpoint raises
    unexpectedly, a 503 while the database cannot be reached. WebSocket handshakes go to
    the ASGI app `sockets` names for their path (404, as an HTTP answer to the handshake,
    for any other path)."""

    def __init__(
        self,
        routes: Sequence[tuple[str, Sequence[str], Endpoint]],
        sockets: Mapping[str, ASGIApp] | None = None,
    ) -> None:
        self._routes = [
            (compile_path(path)[0], frozenset(methods), endpoint)
            for path, methods, endpoint in routes
        ]
        self._sockets = dict(sockets or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            socket = self._sockets.get(scope["path"])
            answer = socket or problem(404, f"no WebSocket at {scope['path']}")
            await answer(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        allowed: list[str] = []
        for regex, methods, endpoint in self._routes:
            matched = regex.match(path)
            if matched is None:
                continue
            if method not in methods:
                allowed += [m for m in sorted(methods) if m not in allowed]
                continue
            scope["path_params"] = matched.groupdict()
            request = Request(scope, receive)
            try:
                response = await endpoint(request)
            except (HTTPProblem, EventgateError, HTTPException) as error:
                response = await render_error(request, error)
            except Exception as error:
                if unreachable(error):  # PostgreSQL is away: the client may retry, soon
                    logger.warning("%s %s: the database cannot be reached (%s)", method, path,
                                   error)  # fmt: skip
                    response = unavailable(path)
                else:
                    logger.exception("%s %s failed", method, path)
                    response = problem(500, "the server could not complete the request")
            await response(scope, receive, send)
            return
        if allowed:
            answer = problem(405, f"{method} is not allowed here", {"Allow": ", ".join(allowed)},
                             path)  # fmt: skip
        else:
            answer = problem(404, f"no resource at {path}", instance=path)
        await answer(scope, receive, send)
