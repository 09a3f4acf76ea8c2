"""The log's latest events, read and decoded once for every client that follows them live.

Without it each SSE or WebSocket client would read and decode every new event itself: 100
clients, 100 decodes of each event. The tail is one subscription to the store, started
when the first client follows and kept running; it keeps the latest KEPT events. A client
whose position is inside the tail takes its events from there (filtered, no decoding); one
that is further behind (resuming from long ago, or too slow to keep up) reads the store
itself, as before, until it is inside the tail again.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable

from eventgate.eventstore.model import RecordedEvent, Scanned
from eventgate.eventstore.protocol import EventStore

__all__ = ["Tail"]

log = logging.getLogger("eventgate.streaming")

KEPT = 4096
BATCH = 200
WAKE_EVERY = 0.005
"""Followers are woken at most this often (seconds): events that land within it go out in
one batch per client, which is what keeps 100 clients at 1,000 events/s cheap."""


class Tail:
    """Follows the store from its head on; `follow` gives any client its events."""

    def __init__(self, store: EventStore, kept: int = KEPT) -> None:
        self._store = store
        self._kept = kept
        self._events: list[RecordedEvent] = []
        self._positions: list[int] = []
        self._covers_after: int | None = None
        """Every event after this position up to the newest is in `_events`."""
        self._grown = asyncio.Event()
        self._last_wake = 0.0
        self._wake_later: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._starting: asyncio.Lock = asyncio.Lock()

    async def follow(
        self,
        keep: Callable[[str, str], bool],
        after: int,
        batch: int = BATCH,
        heartbeat: float | None = None,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Batches of the events after `after` that `keep(stream id, type)` accepts, forever,
        in store order; with `heartbeat`, an empty batch after that many seconds without
        one. A failure of the store is raised here."""
        beat = _Beat(heartbeat)
        while True:
            await self._ensure_running()
            if self._covers(after):
                events, after = self._after(after, batch)
                kept = [e for e in events if keep(e.stream_id, e.type)]
                if kept or beat.due():
                    yield beat.reset(kept)
                elif not events:
                    try:
                        async with asyncio.timeout(beat.left()):
                            await self._wait()
                    except TimeoutError:
                        yield beat.reset([])
                continue
            behind = after
            async for kept, reached in self._from_store(keep, behind, batch):
                after = reached
                if kept or beat.due():
                    yield beat.reset(kept)

    async def _from_store(
        self, keep: Callable[[str, str], bool], after: int, batch: int
    ) -> AsyncIterator[tuple[list[RecordedEvent], int]]:
        """From the store itself, until the tail covers the position reached; the next batch
        is read (on the store's reader thread) while the caller sends the last one."""
        ahead: asyncio.Queue[Scanned | BaseException | None] = asyncio.Queue(1)

        async def read() -> None:
            scanned_batches = self._store.subscribe_matching(keep, after, batch)
            try:
                async for scanned in scanned_batches:
                    await ahead.put(scanned)
                    if self._covers(scanned.position):
                        break
                await ahead.put(None)
            except Exception as e:
                await ahead.put(e)
            finally:
                await scanned_batches.aclose()  # type: ignore[attr-defined]

        reader = asyncio.create_task(read())
        try:
            while (scanned := await ahead.get()) is not None:
                if isinstance(scanned, BaseException):
                    raise scanned
                yield scanned.events, scanned.position
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    def _covers(self, after: int) -> bool:
        running = self._task is not None and not self._task.done()
        return running and self._covers_after is not None and after >= self._covers_after

    def _after(self, after: int, limit: int) -> tuple[list[RecordedEvent], int]:
        """Up to `limit` events after `after` and the position they reach."""
        start = bisect.bisect_right(self._positions, after)
        events = self._events[start : start + limit]
        return events, events[-1].position if events else after

    async def _wait(self) -> None:
        await self._grown.wait()

    async def _ensure_running(self) -> None:
        """Start the tail if it does not run. One that ended with an error raises it to the
        first follower to look; every other follower starts it again from the store's head
        (reading what it lacks from the store), or gets the store's error if it still fails."""
        task = self._task
        if task is not None and task.done():
            self._task, self._covers_after = None, None
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self._task is None:
            await self._ensure_started()

    async def _ensure_started(self) -> None:
        async with self._starting:
            if self._task is None:
                head = await self._store.head()
                self._events, self._positions, self._covers_after = [], [], head
                self._task = asyncio.create_task(  # for every client: no one request's context
                    self._run(head), name="event-stream-tail", context=contextvars.Context()
                )
                self._task.add_done_callback(_ended)

    async def _run(self, after: int) -> None:
        try:
            async for events in self._store.subscribe(after, BATCH):
                self._events += events
                self._positions += [e.position for e in events]
                if len(self._events) > 2 * self._kept:  # trim in steps, not every batch
                    dropped = len(self._events) - self._kept
                    self._covers_after = self._positions[dropped - 1]
                    del self._events[:dropped], self._positions[:dropped]
                self._wake_soon()
        finally:
            self._wake()  # followers see the end (and its error) instead of waiting

    def _wake_soon(self) -> None:
        """Wake the followers now, or WAKE_EVERY after the last time if that was just now."""
        if self._wake_later is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_wake + WAKE_EVERY
        if loop.time() >= due:
            self._wake()
        else:
            self._wake_later = loop.call_at(due, self._wake)

    def _wake(self) -> None:
        if self._wake_later is not None:
            self._wake_later.cancel()
            self._wake_later = None
        self._last_wake = asyncio.get_running_loop().time()
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def _ended(task: asyncio.Task[None]) -> None:
    """Log why the tail stopped (its followers get the error, or start it again)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("event stream tail stopped: %s", task.exception())


class _Beat:
    """When a follower is owed an empty batch: `seconds` after the last batch it got."""

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._last = time.monotonic()

    def due(self) -> bool:
        return self._seconds is not None and time.monotonic() - self._last >= self._seconds

    def left(self) -> float | None:
        if self._seconds is None:
            return None
        return max(0.0, self._last + self._seconds - time.monotonic())

    def reset(self, batch: list[RecordedEvent]) -> list[RecordedEvent]:
        self._last = time.monotonic()
        return batch
