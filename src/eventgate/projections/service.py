"""The upsert service: keeps every projection's read model following the event hub."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from eventgate.errors import StaleCheckpoint
from eventgate.eventstore.model import RecordedEvent, Scanned
from eventgate.hub.hub import Delivery, EventHub
from eventgate.metrics.families import PROJECTION_BATCH_SECONDS
from eventgate.projections.changes import ALL_ROWS, ChangeFeed, RecordChanged
from eventgate.projections.parking import SKIP, ParkedStream
from eventgate.projections.projection import Projection
from eventgate.projections.protocol import ReadStore
from eventgate.tracing import spans as tracing

if TYPE_CHECKING:
    from eventgate.processes.membership import Membership

__all__ = ["ProjectionStatus", "UpsertService"]

_log = logging.getLogger(__name__)
_MIN_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
REQUEST_POLL_INTERVAL = 1.0
"""How often the service looks for retry/skip requests on parked streams (seconds)."""

Progress = Callable[[int], None]


class LogSource(Protocol):
    """Where the service reads the log: the event store, or broker.feed.JetStreamFeed."""

    def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]: ...


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
        self._source: LogSource = hub.store

    def read_from(self, source: LogSource) -> None:
        """Follow the log from `source` (the broker's stream, say) instead of the store."""
        self._source = source

    @property
    def projections(self) -> Iterable[Projection]:
        return self._read_store.projections.values()

    async def run(self) -> None:
        """Follow the log with every projection until cancelled."""
        async with asyncio.TaskGroup() as group:
            if self._membership is None:
                group.create_task(self._keep_running(list(self.projections)), name="projections")
            else:
                self.held = frozenset()
                group.create_task(self._lead(self._membership), name="projection-leases")
            group.create_task(self._serve_requests(), name="parked-stream-requests")

    async def _lead(self, membership: Membership) -> None:
        """Claim and renew leases every heartbeat; run what is held, stop what is not.
        Past the lease's time-to-live without a renewal, stop everything: another process
        may have taken over."""
        registry, names = membership.registry, sorted(self._read_store.projections)
        running: asyncio.Task[None] | None = None  # one follower for all that is held
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
                    _log.warning("cannot renew projection leases (%r)", e)  # %r: str may be ""
                    lapsing = loop.time() - renewed >= membership.ttl - membership.heartbeat
                    claim, keep = None, frozenset() if lapsing else self.held
                if keep != self.held or running is None:
                    await _stop(running)
                    for name in sorted(self.held - keep):
                        _log.info("projection %s: lease given up by %s", name, membership.id)
                    for name in sorted(keep - self.held):
                        _log.info("projection %s: lease held by %s", name, membership.id)
                    held = [self._read_store.projections[name] for name in sorted(keep)]
                    running = asyncio.create_task(self._keep_running(held)) if held else None
                    self.held = keep
                if claim is not None and claim.held - keep:
                    try:
                        await registry.release(membership.id, claim.held - keep)
                    except Exception as e:  # they lapse by themselves within the TTL
                        _log.warning("cannot give back projection leases (%s)", e)
                await asyncio.sleep(membership.heartbeat)
        finally:
            await _stop(running)

    async def follow(
        self, projection: Projection, *, until: int | None = None, progress: Progress | None = None
    ) -> None:
        """Apply deliveries to `projection`; return once its checkpoint reaches `until`."""
        await self.follow_all([projection], until=until, progress=progress)

    async def follow_all(
        self,
        projections: Sequence[Projection],
        *,
        until: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Apply the log to `projections`: one read of each batch for all of them (decoding
        only the types they handle), and one read-store transaction per batch that moves
        every checkpoint with its changes. Returns once every checkpoint reaches `until`."""
        wanted = frozenset().union(*(p.event_types for p in projections))
        while True:
            checkpoints = await self._start(projections)
            if until is not None and min(checkpoints.values()) >= until:
                return
            batches = self._source.subscribe_matching(
                lambda stream, type_name: type_name in wanted,
                after=min(checkpoints.values()),
                batch_size=self._batch_size,
            )
            try:
                async for scanned in batches:
                    await self._apply(projections, checkpoints, scanned)
                    if progress is not None:
                        progress(scanned.position)
                    if until is not None and scanned.position >= until:
                        return
            except StaleCheckpoint as e:
                # Another process moved a read model (a rebuild, say): anything derived from
                # it in this process is suspect; starting again announces a change to every row.
                _log.info("%s; resuming from the stored checkpoints", e)
            finally:
                await batches.aclose()  # type: ignore[attr-defined]

    async def _start(self, projections: Sequence[Projection]) -> dict[str, int]:
        """The stored checkpoints. Starting (or taking a lease over): rows another process
        changed before now may sit in this process's caches, and its parked sets may be
        behind the table, so each view is announced changed everywhere."""
        checkpoints: dict[str, int] = {}
        for projection in projections:
            checkpoint = await self._read_store.load_checkpoint(projection.name)
            await self._read_store.reload_parked(projection.name)
            everything = RecordChanged(projection.name, ALL_ROWS, checkpoint)
            await self._feed.publish(projection.name, checkpoint, [everything])
            checkpoints[projection.name] = checkpoint
        return checkpoints

    async def _apply(
        self, projections: Sequence[Projection], checkpoints: dict[str, int], scanned: Scanned
    ) -> None:
        """Each projection's share of `scanned` (what lies past its checkpoint, of the types
        it handles), applied in one transaction, then announced."""
        position = scanned.position
        deliveries = [
            (p, Delivery(after, position, _share(p, after, scanned)))
            for p in projections
            if position > (after := checkpoints[p.name])
        ]
        if not deliveries:
            return
        started, timer = time.time_ns(), time.perf_counter()
        applied = await self._read_store.apply_all(deliveries)
        ended, took = time.time_ns(), time.perf_counter() - timer
        for projection, delivery in deliveries:
            PROJECTION_BATCH_SECONDS.labels(projection.name).observe(took)
            if tracing.enabled():
                traced = {"eventgate.projection": projection.name,
                          "eventgate.batch": len(delivery.events)}  # fmt: skip
                tracing.applied(f"project {projection.name}", delivery.events, started, ended,
                                traced)  # fmt: skip
        for (projection, delivery), changes in zip(deliveries, applied, strict=True):
            checkpoints[projection.name] = delivery.position
            await self._feed.publish(projection.name, delivery.position, changes)

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

    async def _keep_running(self, projections: Sequence[Projection]) -> None:
        """Follow forever. A failing handler parks its event's stream (in the read store's
        transaction); what fails here is the store itself (disk full, say): logged and
        retried with backoff, never skipped. The backoff starts again after a stretch that
        ran well, so short outages one after another do not each wait the longest."""
        backoff = _MIN_BACKOFF
        names = ", ".join(p.name for p in projections)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.follow_all(projections)
            except Exception:
                if loop.time() - started > _MAX_BACKOFF:
                    backoff = _MIN_BACKOFF
                _log.exception("projections %s failed; retrying in %.1fs", names, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)


def _share(projection: Projection, after: int, scanned: Scanned) -> list[RecordedEvent]:
    """The events of `scanned` past `after` that `projection` handles."""
    events, handled = scanned.events, projection.handlers
    if events and events[0].position <= after:  # it is ahead of the others
        events = [event for event in events if event.position > after]
    return [event for event in events if event.type in handled]


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
