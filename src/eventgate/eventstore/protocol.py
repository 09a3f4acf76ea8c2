"""The event store port: what every backend (SQLite now, PostgreSQL later) must provide."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from eventgate.eventstore.model import NewEvent, RecordedEvent, Scanned

__all__ = ["ANY_VERSION", "NO_STREAM", "EventStore"]

ANY_VERSION: None = None
"""Expected version meaning "append whatever the stream's version is"."""

NO_STREAM = 0
"""Expected version meaning "the stream must not exist yet"."""


class EventStore(Protocol):
    """An append-only log of streams with one global order.

    Guarantees every backend keeps (checked by tests/contract):
    - `append` is atomic: all events of one call are stored, or none is;
    - with `expected_version` given, the append happens only if the stream is at that
      version, else `ConcurrencyError` and nothing is written;
    - once `append` returns, the events are durable;
    - positions strictly increase, and a reader never sees a position before all
      lower positions are visible (no gap is filled in later).
    """

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | None = ANY_VERSION,
    ) -> list[RecordedEvent]:
        """Append `events` to the end of `stream_id`; returns them as stored."""
        ...

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        """The events of one stream from `from_version` on, oldest first."""
        ...

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to `limit` events with a position greater than `after`, in position order."""
        ...

    async def read_command(self, command_id: str) -> list[RecordedEvent]:
        """The events the command `command_id` appended (metadata `commandId`), in order."""
        ...

    async def read_caused_by(
        self, event_ids: Sequence[str], limit: int = 100
    ) -> list[RecordedEvent]:
        """Up to `limit` events whose metadata names one of `event_ids` as their cause
        (`causationId`), in position order: what functions did in answer to them."""
        ...

    async def head(self) -> int:
        """The highest visible position (0 for an empty store)."""
        ...

    async def count_after(self, after: int) -> int:
        """How many visible events lie after position `after`: the lag of a checkpoint there
        (positions need not be consecutive, so it is counted, not subtracted)."""
        ...

    def subscribe(
        self, after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of events after `after`, forever: woken by appends, never empty."""
        ...

    def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]:
        """`subscribe`, decoding only the events whose (stream id, type) `keep` accepts: of
        each `batch_size` events read, the kept ones and the last position read. A batch may
        keep no event; it is yielded all the same, so the reader's position moves on.
        `keep` may run on another thread: it must only read what does not change."""
        ...

    async def close(self) -> None:
        """Finish pending appends and release every resource."""
        ...
