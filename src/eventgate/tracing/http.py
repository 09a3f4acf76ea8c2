"""The HTTP front of a process, traced: a server span per request continuing the client's
`traceparent` (or starting a trace), named by the route pattern once the gateway matched it,
with the stable HTTP semantic-convention attributes. Off, a client's trace context is still
made current, so the events the request records carry it on.

Why not OpenTelemetry's ASGI middleware: it cost 157 µs a request against 21 µs for this
(both with the SDK and a batch processor, same machine and hour; docs/benchmarks.md), and it
records the URL with its query, where an `api_key` may be. This records the path only.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.tracing.spans import METADATA_KEYS, propagated, tracer

__all__ = ["Traced"]

_HEADERS = frozenset(name.encode() for name in METADATA_KEYS)
_STARTS = ("http.response.start", "websocket.http.response.start")


def _parent(scope: Scope) -> otel_context.Context | None:
    carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _HEADERS}
    return propagated(carrier) if carrier else None


def _attributes(scope: Scope, method: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "http.request.method": method,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    client = scope.get("client")
    if client:
        found["client.address"] = client[0]
    return found


class Traced:
    """`app` with its requests traced when tracing is on (built after `configure`)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._tracer = tracer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        parent = _parent(scope)
        if self._tracer is None:
            await self._followed(parent, scope, receive, send)
            return
        method = scope.get("method", "GET")
        span = self._tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=_attributes(scope, method)
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))

        async def noted(message: Message) -> None:
            if message["type"] in _STARTS:
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                    span.set_attribute("error.type", str(status))
            await send(message)

        try:
            await self._app(scope, receive, noted)
        except Exception as e:  # (a client gone, a cancel, is no error of the request)
            span.record_exception(e)
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", type(e).__qualname__)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    async def _followed(
        self, parent: otel_context.Context | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if parent is None:
            await self._app(scope, receive, send)
            return
        token = otel_context.attach(parent)
        try:
            await self._app(scope, receive, send)
        finally:
            otel_context.detach(token)
