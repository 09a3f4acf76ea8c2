"""The HTTP front of a process, traced: a server span per request (OpenTelemetry's ASGI
middleware) continuing the client's `traceparent`, or starting a trace; off, a client's
trace context is still made current, so the events the request records carry it on."""

from __future__ import annotations

import re
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.tracing.spans import METADATA_KEYS, propagated, provider

__all__ = ["Traced"]

_ORIGINAL = "eventgate.unredacted_scope"
_HEADERS = frozenset(name.encode() for name in METADATA_KEYS)
_API_KEY = re.compile(rb"(^|&)(api_key=)[^&]*")


def _method_only(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The span's first name: the route is not known yet (name_request renames it)."""
    return str(scope.get("method") or scope["type"]), {}


class _Unredacted:
    """The app behind OpenTelemetry's middleware, given back the scope it was hidden from."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope.get(_ORIGINAL, scope), receive, send)


class Traced:
    """`app` with its requests traced when tracing is on (built after `configure`)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        chosen = provider()
        self._traced = (
            OpenTelemetryMiddleware(
                _Unredacted(app),
                tracer_provider=chosen,
                exclude_spans=["receive", "send"],
                default_span_details=_method_only,
            )
            if chosen is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
        elif self._traced is not None:
            # a span's attributes must not hold the api_key a query may carry
            query = _API_KEY.sub(rb"\1\2REDACTED", scope.get("query_string", b""))
            await self._traced({**scope, "query_string": query, _ORIGINAL: scope}, receive, send)
        else:
            await self._followed(scope, receive, send)

    async def _followed(self, scope: Scope, receive: Receive, send: Send) -> None:
        carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _HEADERS}
        parent = propagated(carrier) if carrier else None
        if parent is None:
            await self._app(scope, receive, send)
            return
        token = otel_context.attach(parent)
        try:
            await self._app(scope, receive, send)
        finally:
            otel_context.detach(token)
