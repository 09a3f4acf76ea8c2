"""What goes into the event store and what comes out of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import uuid_utils

from eventgate.errors import EventStoreError

__all__ = ["NewEvent", "RecordedEvent", "Scanned", "check_append", "encode_json", "keep_all"]


def _new_event_id() -> str:
    # Time-ordered (RFC 9562 UUIDv7): unique-index inserts land at the end of the index
    # instead of on random pages, which keeps commits small.
    return str(uuid_utils.uuid7())


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type, schema version, JSON data and metadata."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1
    id: str = field(default_factory=_new_event_id)


class RecordedEvent(NamedTuple):
    """A stored event, upcast to the current schema version of its type.

    `stream_version` counts 1..n within the stream without gaps; `position` is the
    store-wide order, strictly increasing in commit order. A NamedTuple, not a frozen
    dataclass: it is built once per event on every append and every replay, and costs
    less than half as much to construct.
    """

    id: str
    stream_id: str
    stream_version: int
    position: int
    type: str
    schema_version: int
    time: datetime
    data: dict[str, Any]
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object (`events --json`, dead letters, audit lines)."""
        return {**self._asdict(), "time": self.time.isoformat()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RecordedEvent:
        return cls(**{**raw, "time": datetime.fromisoformat(raw["time"])})


class Scanned(NamedTuple):
    """One batch of `EventStore.subscribe_matching`: the events it kept, and the last
    position it read, kept or not (a reader resumes after it, past what it skipped)."""

    events: list[RecordedEvent]
    position: int


def keep_all(stream_id: str, type_name: str) -> bool:
    """The `keep` of `subscribe_matching` that keeps every event: what `subscribe` reads."""
    return True


def encode_json(value: dict[str, Any]) -> str:
    """`value` as JSON text; an EventStoreError unless it is a JSON-ready object."""
    if not isinstance(value, dict):
        raise EventStoreError(f"event data and metadata must be JSON objects, not {value!r}")
    try:
        return orjson.dumps(value).decode()
    except TypeError as e:  # orjson.JSONEncodeError
        raise EventStoreError(f"event data is not JSON-serialisable: {e}") from e


def check_append(stream_id: str, events: Sequence[NewEvent], expected: int | None) -> None:
    """Refuse a malformed append before it reaches any backend."""
    if not isinstance(stream_id, str) or not stream_id:
        raise EventStoreError("stream id must be a non-empty string")
    if expected is not None and (isinstance(expected, bool) or expected < 0):
        raise EventStoreError(f"expected version must be None or >= 0, not {expected!r}")
    ids = [event.id for event in events]
    if len(ids) > 1 and len(set(ids)) != len(ids):
        raise EventStoreError("one append cannot hold the same event id twice")
