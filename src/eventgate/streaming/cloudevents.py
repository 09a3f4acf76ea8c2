"""An event as a CloudEvent 1.0 in structured mode (JSON), as clients receive it."""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from eventgate.eventstore.model import RecordedEvent

__all__ = ["source_of", "structured", "token_of"]

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_EXTENSIONS = (("correlationId", "correlationid"), ("causationId", "causationid"),
               ("traceparent", "traceparent"), ("tracestate", "tracestate"))  # fmt: skip


def token_of(app: str) -> str:
    """The app's name as one NATS subject token (and the tail of its CloudEvents source)."""
    return _TOKEN.sub("_", app) or "_"


def source_of(app: str) -> str:
    """The CloudEvents `source` of the app's events, the same on every channel."""
    return f"urn:eventgate:{token_of(app)}"


def structured(source: str, event: RecordedEvent) -> dict[str, Any]:
    """`event` as a structured CloudEvent: the context attributes, `sequence` (the store's
    global position, the CloudEvents sequence extension), the stream and schema versions,
    the correlation and causation ids, the W3C trace context of the request that recorded it
    (the CloudEvents distributed tracing extension: a client or webhook receiver can continue
    the trace), and the event's data."""
    cloud: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": event.type,
        "subject": event.stream_id,
        "time": event.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "sequence": str(event.position),
        "streamversion": event.stream_version,
        "schemaversion": event.schema_version,
    }
    for key, attribute in _EXTENSIONS:
        value = event.metadata.get(key)
        if isinstance(value, str) and value:
            cloud[attribute] = value
    cloud["data"] = event.data
    return cloud
