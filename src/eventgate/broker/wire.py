"""Events on the broker: one JetStream stream per app, subjects by partition and type, and
every message a CloudEvent 1.0 in binary content mode.

Subject: `eventgate.<app>.<partition>.<type>`, so a consumer filters by app
(`eventgate.inventory.>`), by partition (`eventgate.inventory.3.>`) or by type
(`eventgate.inventory.*.InventoryItemCreated`). The body is the event's data as JSON; the
attributes are `ce-` headers any CloudEvents SDK reads (id, source, type, subject = stream
id, time, specversion) plus extensions: `sequence` (the store's global position, the
CloudEvents sequence extension), `streamversion`, `schemaversion`, `correlationid`,
`causationid` and the distributed tracing extension (`traceparent`, `tracestate`) when the
event was recorded in a trace. The whole metadata rides in `Eventgate-Metadata` for
eventgate's consumers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, unquote

import orjson

from eventgate.errors import ConfigError
from eventgate.eventstore.model import RecordedEvent
from eventgate.functions.runner import partition_of
from eventgate.streaming.cloudevents import source_of, structured, token_of

__all__ = ["Layout", "decode", "encode"]

_METADATA = "Eventgate-Metadata"
# The CloudEvents HTTP binding's header encoding (3.1.3.2), which its NATS binding shares:
# printable ASCII as is but space, double quote and percent; the rest percent-encoded.
_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')


@dataclass(frozen=True)
class Layout:
    """Where an app's events live on the broker: its stream and subjects."""

    app: str
    partitions: int

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ConfigError("broker partitions must be from 1 to 1024")

    @property
    def token(self) -> str:
        """The app's name as one subject token."""
        return token_of(self.app)

    @property
    def stream(self) -> str:
        """The JetStream stream of the app's events."""
        return f"EVENTGATE_{self.token.upper()}"

    @property
    def subjects(self) -> str:
        """Every subject of the app's events."""
        return f"eventgate.{self.token}.>"

    @property
    def source(self) -> str:
        """The CloudEvents `source` of the app's events."""
        return source_of(self.app)

    def subject(self, event: RecordedEvent) -> str:
        partition = partition_of(event.stream_id, self.partitions)
        return f"eventgate.{self.token}.{partition}.{token_of(event.type)}"

    def partition_subjects(self, partition: int) -> str:
        """The filter of one partition's events."""
        return f"eventgate.{self.token}.{partition}.>"


def encode(layout: Layout, event: RecordedEvent) -> tuple[str, bytes, dict[str, str]]:
    """The subject, body and headers of `event`'s message: the attributes of the structured
    CloudEvent that SSE clients get, as `ce-` headers (binary content mode)."""
    attributes = structured(layout.source, event)
    data = attributes.pop("data")
    headers = {"Nats-Msg-Id": event.id, "content-type": attributes.pop("datacontenttype")}
    for name, value in attributes.items():
        headers[f"ce-{name}"] = quote(value, safe=_SAFE) if isinstance(value, str) else str(value)
    headers[_METADATA] = orjson.dumps(event.metadata).decode()
    return layout.subject(event), orjson.dumps(data), headers


def decode(headers: dict[str, str], body: bytes) -> RecordedEvent:
    """The stored event a message carries (ValueError/KeyError if it is not one of ours)."""
    return RecordedEvent(
        id=unquote(headers["ce-id"]),
        stream_id=unquote(headers["ce-subject"]),
        stream_version=int(headers["ce-streamversion"]),
        position=int(headers["ce-sequence"]),
        type=unquote(headers["ce-type"]),
        schema_version=int(headers["ce-schemaversion"]),
        time=datetime.fromisoformat(headers["ce-time"]),
        data=orjson.loads(body),
        metadata=orjson.loads(headers.get(_METADATA, "{}")),
    )
