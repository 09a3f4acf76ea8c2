"""The upsert service: keeps every projection's read model following the event hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from eventgate.errors import StaleCheckpoint
from eventgate.hub.hub import EventHub
from eventgate.projections.changes import ChangeFeed, RecordChanged
from eventgate.projections.projection import Projection
from eventgate.projections.readstore import SQLiteReadStore

__all__ = ["ProjectionStatus", "UpsertService"]

_log = logging.getLogger(__name__)
_MAX_BACKOFF = 30.0

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ProjectionStatus:
    """Where one projection stands against the head of the log."""

    name: str
    checkpoint: int
    head: int

    @property
    def lag(self) -> int:
        return max(self.head - self.checkpoint, 0)


class UpsertService:
    """Runs each projection as a hub subscriber whose checkpoint lives in the read store."""

    def __init__(
        self,
        hub: EventHub,
        read_store: SQLiteReadStore,
        feed: ChangeFeed,
        *,
        batch_size: int = 500,
    ) -> None:
        self._hub = hub
        self._read_store = read_store
        self._feed = feed
        self._batch_size = batch_size

    @property
    def projections(self) -> Iterable[Projection]:
        return self._read_store.projections.values()

    async def run(self) -> None:
        """Follow the log with every projection until cancelled."""
        async with asyncio.TaskGroup() as group:
            for projection in self.projections:
                group.create_task(self._keep_running(projection), name=projection.name)

    async def follow(
        self, projection: Projection, *, until: int | None = None, progress: Progress | None = None
    ) -> None:
        """Apply deliveries to `projection`; return once its checkpoint reaches `until`."""
        while True:
            subscription = self._hub.subscription(
                projection.name,
                self._read_store,
                types=projection.event_types,
                batch_size=self._batch_size,
            )
            checkpoint = await subscription.checkpoint()
            await self._feed.publish(projection.name, checkpoint, [])
            if until is not None and checkpoint >= until:
                return
            try:
                async for delivery in subscription:
                    changes = await self._read_store.apply(projection, delivery)
                    await self._feed.publish(projection.name, delivery.position, changes)
                    if progress is not None:
                        progress(delivery.position)
                    if until is not None and delivery.position >= until:
                        return
            except StaleCheckpoint as e:
                # Another process moved this read model (a rebuild, say): anything derived
                # from it in this process is suspect, so announce a change to every row.
                _log.info("%s; resuming from the stored checkpoint", e)
                everything = RecordChanged(projection.name, "*", checkpoint)
                await self._feed.publish(projection.name, checkpoint, [everything])

    async def rebuild(self, projection: Projection, progress: Progress | None = None) -> int:
        """Empty `projection` and replay the log into it up to today's head; returns the head."""
        head = await self._hub.store.head()
        await self._read_store.reset(projection)
        await self.follow(projection, until=head, progress=progress)
        return head

    async def status(self) -> list[ProjectionStatus]:
        """Checkpoint and lag of every projection."""
        head = await self._hub.store.head()
        return [
            ProjectionStatus(p.name, await self._read_store.load_checkpoint(p.name), head)
            for p in self.projections
        ]

    async def _keep_running(self, projection: Projection) -> None:
        """Follow forever; a failing handler is logged and retried with backoff, never skipped."""
        backoff = 0.5
        while True:
            try:
                await self.follow(projection)
            except Exception:
                _log.exception("projection %s failed; retrying in %.1fs", projection.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
