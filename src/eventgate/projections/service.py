"""The upsert service: keeps every projection's read model following the event hub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventgate.errors import StaleCheckpoint
from eventgate.hub.hub import EventHub
from eventgate.projections.changes import ALL_ROWS, ChangeFeed, RecordChanged
from eventgate.projections.parking import SKIP, ParkedStream
from eventgate.projections.projection import Projection
from eventgate.projections.protocol import ReadStore

if TYPE_CHECKING:
    from eventgate.processes.membership import Membership

__all__ = ["ProjectionStatus", "UpsertService"]

_log = logging.getLogger(__name__)
_MAX_BACKOFF = 30.0
REQUEST_POLL_INTERVAL = 1.0
"""How often the service looks for retry/skip requests on parked streams (seconds)."""

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ProjectionStatus:
    """Where one projection stands against the head of the log, and what it has parked."""

    name: str
    checkpoint: int
    head: int
    lag: int
    """Events after the checkpoint."""
    parked: list[ParkedStream] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "head": self.head,
            "lag": self.lag,
            "parked": [p.to_json() for p in self.parked],
        }


class UpsertService:
    """Runs each projection as a hub subscriber whose checkpoint lives in the read store.

    With a `membership`, a projection runs here only while this process holds its lease
    (one per projection, shared fairly among the processes running projections); the
    read store's checkpoint compare-and-set is the fence, so even a holder whose lease
    lapsed unseen can never apply an event another holder has applied.
    """

    def __init__(
        self,
        hub: EventHub,
        read_store: ReadStore,
        feed: ChangeFeed,
        *,
        batch_size: int = 500,
        membership: Membership | None = None,
    ) -> None:
        self._hub = hub
        self._read_store = read_store
        self._feed = feed
        self._batch_size = batch_size
        self._membership = membership
        self.held: frozenset[str] = frozenset(read_store.projections)
        """The projections this process runs now (all of them without a membership)."""

    @property
    def projections(self) -> Iterable[Projection]:
        return self._read_store.projections.values()

    async def run(self) -> None:
        """Follow the log with every projection until cancelled."""
        async with asyncio.TaskGroup() as group:
            if self._membership is None:
                for projection in self.projections:
                    group.create_task(self._keep_running(projection), name=projection.name)
            else:
                self.held = frozenset()
                group.create_task(self._lead(self._membership), name="projection-leases")
            group.create_task(self._serve_requests(), name="parked-stream-requests")

    async def _lead(self, membership: Membership) -> None:
        """Claim and renew leases every heartbeat; run what is held, stop what is not.
        Past the lease's time-to-live without a renewal, stop everything: another process
        may have taken over."""
        registry, names = membership.registry, sorted(self._read_store.projections)
        running: dict[str, asyncio.Task[None]] = {}
        renewed = asyncio.get_running_loop().time()
        try:
            await membership.joined.wait()
            while True:
                loop = asyncio.get_running_loop()
                asked = loop.time()
                try:
                    async with asyncio.timeout(membership.ttl / 2):
                        claim = await registry.claim(
                            membership.id, names, "projections", membership.ttl
                        )
                    renewed = asked
                    keep = frozenset(sorted(claim.held)[: claim.fair_share])
                except Exception as e:  # the lease may lapse: stop before another takes over
                    _log.warning("cannot renew projection leases (%s)", str(e) or type(e).__name__)
                    lapsing = loop.time() - renewed >= membership.ttl - membership.heartbeat
                    claim, keep = None, frozenset() if lapsing else self.held
                stopped = [running.pop(name) for name in sorted(set(running) - keep)]
                for task in stopped:
                    task.cancel()
                for name in sorted(self.held - keep):
                    _log.info("projection %s: lease given up by %s", name, membership.id)
                await asyncio.gather(*stopped, return_exceptions=True)
                for name in sorted(keep - set(running)):
                    projection = self._read_store.projections[name]
                    running[name] = asyncio.create_task(self._keep_running(projection))
                    _log.info("projection %s: lease held by %s", name, membership.id)
                self.held = keep
                if claim is not None and claim.held - keep:
                    try:
                        await registry.release(membership.id, claim.held - keep)
                    except Exception as e:  # they lapse by themselves within the TTL
                        _log.warning("cannot give back projection leases (%s)", e)
                await asyncio.sleep(membership.heartbeat)
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

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
            # Starting (or taking a lease over): rows another process changed before now may
            # sit in this process's caches, and its parked set may be behind the table.
            await self._read_store.reload_parked(projection.name)
            everything = RecordChanged(projection.name, ALL_ROWS, checkpoint)
            await self._feed.publish(projection.name, checkpoint, [everything])
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
                await self._read_store.reload_parked(projection.name)
                everything = RecordChanged(projection.name, ALL_ROWS, checkpoint)
                await self._feed.publish(projection.name, checkpoint, [everything])

    async def rebuild(self, projection: Projection, progress: Progress | None = None) -> int:
        """Empty `projection` and replay the log into it up to today's head; returns the head."""
        head = await self._hub.store.head()
        await self._read_store.reset(projection)
        await self.follow(projection, until=head, progress=progress)
        return head

    async def status(self) -> list[ProjectionStatus]:
        """Checkpoint, lag and parked streams of every projection."""
        head = await self._hub.store.head()
        parked = await self._read_store.parked_streams()
        return [
            ProjectionStatus(
                p.name,
                checkpoint,
                head,
                await self._hub.store.count_after(checkpoint),
                [stream for stream in parked if stream.projection == p.name],
            )
            for p in self.projections
            for checkpoint in [await self._read_store.load_checkpoint(p.name)]
        ]

    async def handle_requests(self) -> int:
        """Retry or skip the parked streams an operator asked for; returns how many."""
        handled = 0
        for wanted in await self._read_store.requested():
            projection = self._read_store.projections.get(wanted.projection)
            if projection is None or projection.name not in self.held:
                continue  # a read model this app no longer has, or another process runs
            events = await self._hub.store.read_stream(wanted.stream_id)
            skip = wanted.request == SKIP
            changes = await self._read_store.retry(projection, wanted.stream_id, events, skip)
            checkpoint = await self._read_store.load_checkpoint(projection.name)
            await self._feed.publish(projection.name, checkpoint, changes)
            still = wanted.stream_id in self._read_store.parked(projection.name)
            _log.info("%s: %s of stream %s %s", projection.name, wanted.request,
                      wanted.stream_id, "left it parked" if still else "unparked it")  # fmt: skip
            handled += 1
        return handled

    async def _serve_requests(self) -> None:
        while True:
            try:
                await self.handle_requests()
            except Exception:
                _log.exception("handling parked-stream requests failed; trying again")
            await asyncio.sleep(REQUEST_POLL_INTERVAL)

    async def _keep_running(self, projection: Projection) -> None:
        """Follow forever. A failing handler parks its event's stream (in the read store's
        transaction); what fails here is the store itself (disk full, say): logged and
        retried with backoff, never skipped."""
        backoff = 0.5
        while True:
            try:
                await self.follow(projection)
            except Exception:
                _log.exception("projection %s failed; retrying in %.1fs", projection.name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
