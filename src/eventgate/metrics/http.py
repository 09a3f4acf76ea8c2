"""Counting and timing HTTP requests by route pattern: never a raw path, so a series per
route, not per item."""

from __future__ import annotations

import time

from prometheus_client import Counter
from prometheus_client.metrics import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.gateway.routes import RouteTable
from eventgate.metrics.families import HTTP_REQUESTS, HTTP_SECONDS
from eventgate.tracing import spans as tracing

__all__ = ["MeteredService", "RequestMeter", "route_label"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OWN_PAGES = ("/openapi.json", "/asyncapi.json", "/docs", "/console", "/metrics")
UNMATCHED = "unmatched"
"""The route of a request no route took (a 404, a 405, a 401 on a path no route takes)."""


def route_label(pattern: str | None, path: str) -> str:
    """`pattern` when a route took the request; else the gateway's own page it asked for
    (its prefix), else UNMATCHED."""
    if pattern is not None:
        return pattern
    for page in _OWN_PAGES:
        if path.startswith(page):
            return page
    return UNMATCHED


class RequestMeter:
    """Wraps one request's `send` to note its status; `done` counts and times it."""

    __slots__ = ("_send", "_started", "route", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._started = time.perf_counter()
        self.route = UNMATCHED
        self.status = 500  # ended without an answer: the server's fault

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start" or kind == "websocket.http.response.start":
            self.status = message["status"]
        elif kind == "websocket.accept":
            self.status = 101
        await self._send(message)

    def done(self, component: str, method: str) -> None:
        method = method if method in _METHODS else "other"
        key = (component, self.route, method, self.status)
        counter, histogram = _children.get(key) or _child(key)
        counter.inc()
        histogram.observe(time.perf_counter() - self._started)


_children: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}


def _child(key: tuple[str, str, str, int]) -> tuple[Counter, Histogram]:
    """The labelled children of a key, kept: `labels()` costs a lock and a dict per call."""
    component, route, method, status = key
    children = (HTTP_REQUESTS.labels(component, route, method, str(status)),
                HTTP_SECONDS.labels(component, route, method))  # fmt: skip
    _children[key] = children
    return children


class MeteredService:
    """A command or query service run on its own, its requests counted by route pattern
    (the gateway's table of the same app)."""

    def __init__(self, app: ASGIApp, table: RouteTable, component: str) -> None:
        self._app = app
        self._table = table
        self._component = component

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        meter = RequestMeter(send)
        method, path = scope.get("method", "GET"), scope["path"]
        route = self._table.match(method, path)
        meter.route = route_label(route.pattern if route else None, path)
        tracing.name_request(method, meter.route)
        try:
            await self._app(scope, receive, meter.send)
        finally:
            meter.done(self._component, method)
