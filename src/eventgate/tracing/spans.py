"""The spans eventgate makes, and the trace context it keeps in event metadata.

Tracing is on once a tracer provider is enabled (`setup.configure` from the OTEL_*
environment, or a test's own). Off, nothing here makes a span, and an event carries a
trace context only when a client sent one (`traceparent`), which is then passed on as is:
no cost on the hot paths beyond one contextvar read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from eventgate.eventstore.model import RecordedEvent

__all__ = [
    "METADATA_KEYS",
    "applied",
    "carried",
    "enable",
    "enabled",
    "event_span",
    "failed",
    "name_request",
    "propagated",
    "provider",
    "span",
    "tracer",
]

METADATA_KEYS = ("traceparent", "tracestate")
"""The W3C trace context headers, kept under the same names in event metadata."""
MAX_TRACESTATE = 512
"""Characters of `tracestate` kept (W3C: propagate at least 512; beyond may be dropped)."""
_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    provider: TracerProvider | None = None
    tracer: Tracer | None = None


def enable(chosen: TracerProvider | None) -> None:
    """Trace with `chosen` from now on (None: stop tracing)."""
    _State.provider = chosen
    _State.tracer = chosen.get_tracer("eventgate") if chosen is not None else None


def enabled() -> bool:
    return _State.tracer is not None


def provider() -> TracerProvider | None:
    return _State.provider


def tracer() -> Tracer | None:
    return _State.tracer


def propagated(carrier: Mapping[str, Any]) -> Context | None:
    """The trace context in `carrier` (event metadata or headers), None when it has none
    or an invalid one. Never raises: metadata may come from anywhere (another producer on
    the broker, a copied store), and a runner must not stall on it."""
    parent = carrier.get("traceparent")
    if not isinstance(parent, str):
        return None
    state = carrier.get("tracestate")
    clean = {"traceparent": parent, **({"tracestate": state} if isinstance(state, str) else {})}
    try:
        found = _PROPAGATOR.extract(clean)
    except Exception:  # the propagator's parsing is not ours to trust with a lane
        return None
    if not trace.get_current_span(found).get_span_context().is_valid:
        return None
    return found


def carried() -> dict[str, str]:
    """The current trace context as metadata entries: empty when there is none. A
    `tracestate` longer than W3C's 512 characters is left out (a client's could otherwise
    add kilobytes to every event it causes)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    if len(carrier.get("tracestate", "")) > MAX_TRACESTATE:
        del carrier["tracestate"]
    return carrier


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span | None]:
    """A child of the current span, current while the block runs (None when off)."""
    chosen = _State.tracer
    if chosen is None:
        yield None
        return
    with chosen.start_as_current_span(name, attributes=attributes) as made:
        yield made


@contextlib.contextmanager
def event_span(
    name: str, event: RecordedEvent, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span | None]:
    """A span continuing the trace the event was recorded in (its metadata's trace context),
    current while the block runs. Off, the event's context is still made current, so what
    the block records (a command a function sends) carries it on."""
    parent = propagated(event.metadata)
    chosen = _State.tracer
    if chosen is None:
        if parent is None:
            yield None
            return
        token = otel_context.attach(parent)
        try:
            yield None
        finally:
            otel_context.detach(token)
        return
    attributes = {**(attributes or {}), **_of(event)}
    with chosen.start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as made:
        yield made


def applied(
    name: str,
    events: Iterable[RecordedEvent],
    started: int,
    ended: int,
    attributes: Mapping[str, Any],
) -> None:
    """One span per traced event a read model applied in a batch (their shared transaction
    from `started` to `ended`, in ns), each a child of the span that recorded its event."""
    chosen = _State.tracer
    if chosen is None:
        return
    for event in events:
        parent = propagated(event.metadata)
        if parent is not None:
            made = chosen.start_span(
                name,
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={**attributes, **_of(event)},
                start_time=started,
            )
            made.end(end_time=ended)


def _of(event: RecordedEvent) -> dict[str, Any]:
    return {"eventgate.event.id": event.id, "eventgate.event.type": event.type,
            "eventgate.stream": event.stream_id, "eventgate.position": event.position}  # fmt: skip


def failed(made: Span | None, error_type: str, message: str) -> None:
    """Mark `made` failed (an attempt that did not succeed)."""
    if made is not None:
        made.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"[:500]))
        made.set_attribute("error.type", error_type)


def name_request(method: str, route: str) -> None:
    """Name the current request's span by its route pattern (`POST /api/items`), never by
    its path: a name per route, not per item."""
    current = trace.get_current_span()
    if current.is_recording():
        current.update_name(f"{method} {route}")
        current.set_attribute("http.route", route)
