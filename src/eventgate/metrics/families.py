"""Every metric eventgate exposes, named per Prometheus conventions (base units, `_total`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "APPENDS",
    "COMMIT_BATCH",
    "EVENTS_APPENDED",
    "FUNCTION_CHECKPOINT",
    "FUNCTION_DEAD_LETTERED",
    "FUNCTION_DEAD_LETTERS",
    "FUNCTION_FAILURES",
    "FUNCTION_INVOCATIONS",
    "FUNCTION_LAG_EVENTS",
    "FUNCTION_LAG_SECONDS",
    "FUNCTION_RETRIES",
    "FUNCTION_SECONDS",
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "PROJECTION_BATCH_SECONDS",
    "PROJECTION_CHECKPOINT",
    "PROJECTION_LAG_EVENTS",
    "PROJECTION_LAG_SECONDS",
    "PROJECTION_PARKED",
    "RELAY_CHECKPOINT",
    "RELAY_LAG_EVENTS",
    "STREAM_CLIENTS",
    "record_commit",
]

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "eventgate_http_requests",
    "HTTP requests answered, by route pattern, method and status.",
    ["component", "route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "eventgate_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer (a stream's: its whole life).",
    ["component", "route", "method"],
    buckets=_LATENCY,
)

APPENDS = Counter("eventgate_appends", "Appends committed (one call, one stream).", ["backend"])
EVENTS_APPENDED = Counter("eventgate_events_appended", "Events committed.", ["backend"])
COMMIT_BATCH = Histogram(
    "eventgate_commit_batch_appends",
    "Appends carried by one group commit (one transaction, one fsync).",
    ["backend"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

PROJECTION_CHECKPOINT = Gauge(
    "eventgate_projection_checkpoint", "Log position a projection has applied.", ["projection"]
)
PROJECTION_LAG_EVENTS = Gauge(
    "eventgate_projection_lag_events",
    "Events stored after a projection's checkpoint.",
    ["projection"],
)
PROJECTION_LAG_SECONDS = Gauge(
    "eventgate_projection_lag_seconds",
    "Age of the oldest event a projection has not applied (0 when caught up).",
    ["projection"],
)
PROJECTION_PARKED = Gauge(
    "eventgate_projection_parked_streams",
    "Streams parked by a projection after a failing handler (they wait for retry or skip).",
    ["projection"],
)
PROJECTION_BATCH_SECONDS = Histogram(
    "eventgate_projection_batch_duration_seconds",
    "Time to apply one batch of the log (one read-store transaction for the projections in it).",
    ["projection"],
    buckets=_LATENCY,
)

FUNCTION_CHECKPOINT = Gauge(
    "eventgate_function_checkpoint",
    "Lowest log position a function has finished (all partitions).",
    ["function"],
)
FUNCTION_LAG_EVENTS = Gauge(
    "eventgate_function_lag_events", "Events stored after a function's checkpoint.", ["function"]
)
FUNCTION_LAG_SECONDS = Gauge(
    "eventgate_function_lag_seconds",
    "Age of the oldest event after a function's checkpoint (0 when caught up).",
    ["function"],
)
FUNCTION_DEAD_LETTERS = Gauge(
    "eventgate_function_dead_letters",
    "Dead letters a function holds (not replayed or discarded).",
    ["function"],
)
FUNCTION_INVOCATIONS = Counter(
    "eventgate_function_invocations", "Attempts to run a function on an event.", ["function"]
)
FUNCTION_FAILURES = Counter(
    "eventgate_function_failures",
    "Attempts that raised, timed out or asked for a retry.",
    ["function"],
)
FUNCTION_RETRIES = Counter(
    "eventgate_function_retries", "Failed attempts followed by another attempt.", ["function"]
)
FUNCTION_DEAD_LETTERED = Counter(
    "eventgate_function_dead_lettered", "Events this process dead-lettered.", ["function"]
)
FUNCTION_SECONDS = Histogram(
    "eventgate_function_duration_seconds",
    "Time one attempt of a function took.",
    ["function"],
    buckets=_LATENCY,
)

STREAM_CLIENTS = Gauge(
    "eventgate_stream_clients", "Clients following the event stream now.", ["transport"]
)
RELAY_CHECKPOINT = Gauge(
    "eventgate_relay_checkpoint", "Log position the relay has published to the broker."
)
RELAY_LAG_EVENTS = Gauge(
    "eventgate_relay_lag_events", "Events stored and not yet published to the broker."
)


def record_commit(backend: str, appends: int, events: int) -> None:
    """One group commit of the event store: `appends` committed, holding `events`."""
    if appends:
        APPENDS.labels(backend).inc(appends)
        EVENTS_APPENDED.labels(backend).inc(events)
        COMMIT_BATCH.labels(backend).observe(appends)
