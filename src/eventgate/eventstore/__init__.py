"""The event store: the port, its SQLite backend, and upcasting of old events."""

from __future__ import annotations

from eventgate.eventstore.model import NewEvent, RecordedEvent
from eventgate.eventstore.protocol import ANY_VERSION, NO_STREAM, EventStore
from eventgate.eventstore.sqlite import SQLiteEventStore
from eventgate.eventstore.upcasting import Upcasters

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "SQLiteEventStore",
    "Upcasters",
]
