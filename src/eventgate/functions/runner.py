"""One function in one worker: read the log, run its events, keep its checkpoints.

Why it is correct:
- Every stream maps to one of N partitions (crc32). A worker runs only the partitions it
  leases, so one stream's events are run by one process at a time. It reads every position
  of the log but decodes only its partitions' events of the types the function wants
  (`subscribe_matching` decides on the stream id and type before decoding), so N workers
  do not decode the log N times.
- Within a process each stream has one lane: its events wait in a queue and run one at a
  time, in log order; lanes of different streams run at once, up to `concurrency`.
- The checkpoint of a partition is the position below its oldest unfinished event (its
  watermark). Finished means succeeded or dead-lettered; a crash therefore redelivers
  everything unfinished and perhaps a little that finished (at-least-once), never less.
- At most `max_pending` events are read and not finished: the reader waits for room
  (backpressure), so memory is bounded however slow the function is.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventgate.functions.api import Function, FunctionEvent
from eventgate.functions.attempts import Failure, backoff, hold, invoke, park, surely, too_old
from eventgate.functions.context import Context, Services
from eventgate.metrics.families import FUNCTION_RETRIES

__all__ = ["FunctionRunner", "every", "partition_of"]

log = logging.getLogger("eventgate.functions")


async def every(interval: float, action: Callable[[], Awaitable[None]], function: str) -> None:
    """Run `action` every `interval` seconds until cancelled; a failure is logged, retried."""
    while True:
        await asyncio.sleep(interval)
        try:
            await action()
        except Exception:
            log.exception("%s: background step failed; trying again", function)


def partition_of(stream_id: str, partitions: int) -> int:
    """The partition of a stream: the same in every process."""
    return zlib.crc32(stream_id.encode()) % partitions


@dataclass(eq=False)
class _Item:
    event: FunctionEvent
    partition: int
    position: int | None  # None for a dead-letter replay (its position is checkpointed)
    letter: int | None = None


@dataclass(eq=False)
class _Lane:
    partition: int
    queue: deque[_Item] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Partition:
    committed: int
    scanned: int
    unfinished: dict[int, bool] = field(default_factory=dict)  # position -> finished, in order

    def finish(self, position: int) -> None:
        self.unfinished[position] = True
        while self.unfinished:
            first, finished = next(iter(self.unfinished.items()))
            if not finished:
                break
            del self.unfinished[first]

    @property
    def watermark(self) -> int:
        return next(iter(self.unfinished)) - 1 if self.unfinished else self.scanned


class FunctionRunner:
    """Runs one function for the partitions its worker owns."""

    def __init__(
        self,
        function: Function,
        services: Services,
        owner: str,
        partitions: int,
        *,
        max_pending: int = 1000,
        commit_interval: float = 0.2,
        replay_interval: float = 0.5,
        batch_size: int = 500,
    ) -> None:
        self.function = function
        self._services = services
        self._owner = owner
        self._partitions = partitions
        self._commit_interval = commit_interval
        self._replay_interval = replay_interval
        self._batch_size = batch_size
        self._window = asyncio.Semaphore(max_pending)
        self._slots = asyncio.Semaphore(function.concurrency)
        self._parts: dict[int, _Partition] = {}
        self._lanes: dict[str, _Lane] = {}
        self._replaying: set[int] = set()
        self._effects: list[tuple[int, int, str]] = []  # (partition, position, event id)
        self._counts = [0, 0]  # invocations, failed attempts since the last save
        self._reader: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._parts)

    @property
    def pending(self) -> int:
        """Events read and not finished (never more than `max_pending`)."""
        return sum(len(lane.queue) for lane in self._lanes.values())

    def start(self) -> None:
        self._background = [
            asyncio.create_task(every(self._commit_interval, self.commit, self.function.name)),
            asyncio.create_task(
                every(self._replay_interval, self._poll_replays, self.function.name)
            ),
        ]

    async def assign(self, owned: frozenset[int]) -> None:
        """Run exactly the partitions `owned`: stop the others (after saving their
        checkpoints) and resume new ones from their stored checkpoints."""
        lost, gained = self.owned - owned, owned - self.owned
        if not lost and not gained:
            return
        await self._stop_reader()
        if lost:
            await self._drop(lost)
        if gained:
            stored = await self._services.functions.load_checkpoints(self.function.name)
            for p in gained:
                self._parts[p] = _Partition(committed=stored[p], scanned=stored[p])
        if self._parts:
            self._reader = asyncio.create_task(self._read(), name=f"read-{self.function.name}")

    async def stop(self) -> None:
        """Stop everything, save the checkpoints; unfinished events go to the next owner."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._stop_reader()
        await self._drop(self.owned)

    # -- reading and dispatching --------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                await self._follow()
            except Exception:
                log.exception("%s: reading the log failed; resuming in 1 s", self.function.name)
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        cursor = min(part.scanned for part in self._parts.values())
        batches = self._services.store.subscribe_matching(self._keeper(), cursor, self._batch_size)
        async for batch in batches:
            for recorded in batch.events:
                p = partition_of(recorded.stream_id, self._partitions)
                part = self._parts.get(p)
                if part is None or recorded.position <= part.scanned:
                    continue
                await self._window.acquire()
                part.unfinished[recorded.position] = False
                self._enqueue(_Item(recorded, p, recorded.position))
                part.scanned = recorded.position
            for part in self._parts.values():  # the whole batch is scanned for every partition
                part.scanned = max(part.scanned, batch.position)

    def _keeper(self) -> Callable[[str, str], bool]:
        """Which events the reader decodes: the function's types in the partitions owned now
        (a change of ownership restarts the reader, and with it this filter)."""
        owned, partitions, wants = self.owned, self._partitions, self.function.wants

        def keep(stream_id: str, type_name: str) -> bool:
            return wants(type_name) and partition_of(stream_id, partitions) in owned

        return keep

    async def _poll_replays(self) -> None:
        letters = await self._services.functions.replays(
            self.function.name, self.owned, self._replaying
        )
        for letter_id, p, event in letters:
            if p not in self._parts:
                continue
            await self._window.acquire()
            self._replaying.add(letter_id)
            self._enqueue(_Item(event, p, None, letter_id))

    def _enqueue(self, item: _Item) -> None:
        stream_id = item.event.stream_id
        lane = self._lanes.get(stream_id)
        if lane is None:
            lane = self._lanes[stream_id] = _Lane(item.partition)
            lane.task = asyncio.create_task(self._drain(stream_id, lane))
        lane.queue.append(item)

    async def _drain(self, stream_id: str, lane: _Lane) -> None:
        try:
            while lane.queue:
                try:
                    await self._process(lane.queue[0])
                except Exception as e:  # a bug of ours: the lane stays, its events held
                    log.exception("%s: stream %s: %r; trying its event again in 1 s",
                                  self.function.name, stream_id, e)  # fmt: skip
                    await asyncio.sleep(1.0)
                    continue
                self._finish(lane.queue.popleft())
        finally:
            for item in lane.queue:  # only when cancelled: these go to the next owner
                self._release(item)
            if self._lanes.get(stream_id) is lane:
                del self._lanes[stream_id]

    def _release(self, item: _Item) -> None:
        """Give back the item's room in the read-ahead window (finished or abandoned)."""
        self._window.release()
        if item.letter is not None:
            self._replaying.discard(item.letter)

    def _finish(self, item: _Item) -> None:
        self._release(item)
        part = self._parts.get(item.partition)
        if item.position is not None and part is not None:
            part.finish(item.position)

    # -- one event: attempts, retries, dead letters -------------------------------------

    async def _process(self, item: _Item) -> None:
        attempt, first_failure = 0, None
        while True:
            async with self._slots:  # waiting here is not an attempt
                old = too_old(self.function, item.event, item.letter is not None)
                if old is None:
                    attempt += 1
                    ctx = Context(self.function.name, item.event, attempt, self._services)
                    failure = await invoke(self.function, ctx)
            if old is not None:
                await self._park(item, old, attempt, first_failure)
                return
            self._counts[0] += 1
            if failure is None:
                await self._succeeded(item, ctx)
                return
            if failure.held:  # unfinished until this runner is stopped
                await hold(self.function, item.event, failure)
            self._counts[1] += 1
            first_failure = first_failure or datetime.now(UTC)
            ctx.logger.warning(
                "%s attempt %d failed: %s: %s",
                self.function.name,
                attempt,
                failure.error_type,
                failure.message,
            )
            if failure.final or attempt > self.function.retries:
                await self._park(item, failure, attempt, first_failure)
                return
            FUNCTION_RETRIES.labels(self.function.name).inc()
            await asyncio.sleep(
                failure.delay if failure.delay is not None else backoff(self.function, attempt)
            )

    async def _park(
        self, item: _Item, failure: Failure, attempts: int, first: datetime | None
    ) -> None:
        event, function = item.event, self.function
        await surely(function.name, "dead-letter", park, self._services, function,
                     item.partition, event, failure, attempts, first)  # fmt: skip

    async def _succeeded(self, item: _Item, ctx: Context) -> None:
        if item.letter is not None:
            await surely(self.function.name, "replayed", self._services.functions.replayed,
                         item.letter)  # fmt: skip
            ctx.logger.info("dead letter %d replayed", item.letter)
        if ctx.effects_recorded and item.position is not None:
            self._effects.append((item.partition, item.position, item.event.id))

    # -- checkpoints --------------------------------------------------------------------

    async def commit(self) -> None:
        """Save every partition's watermark that moved, and forget effects now behind it."""
        moved = {
            p: part.watermark for p, part in self._parts.items() if part.watermark != part.committed
        }
        invocations, failures = self._counts
        if not moved and not invocations:
            return
        self._counts = [0, 0]
        lost = await self._services.functions.save_progress(
            self.function.name, self._owner, moved, invocations, failures
        )
        for p, position in moved.items():
            if p not in lost and p in self._parts:
                self._parts[p].committed = position
        behind = [
            (p, pos, event_id)
            for p, pos, event_id in self._effects
            if p in self._parts and pos <= self._parts[p].committed
        ]
        if behind:
            self._effects = [e for e in self._effects if e not in behind]
            await self._services.functions.forget_effects(
                self.function.name, [event_id for _, _, event_id in behind]
            )

    async def _drop(self, partitions: frozenset[int]) -> None:
        """Stop `partitions`, saving their checkpoints if the store takes them: with the
        store away (the very reason leases are given up) they are dropped unsaved, and the
        next owner redelivers from the last saved ones (at-least-once, never less)."""
        lanes = [lane for lane in self._lanes.values() if lane.partition in partitions]
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes if lane.task), return_exceptions=True)
        try:
            await self.commit()
        except Exception as e:
            log.warning("%s: saving the progress of partitions %s failed (%s); their events"
                        " after the last saved checkpoints may run again", self.function.name,
                        sorted(partitions), e)  # fmt: skip
        for p in partitions:
            self._parts.pop(p, None)
        self._effects = [e for e in self._effects if e[0] not in partitions]

    async def _stop_reader(self) -> None:
        """Cancel the reader and wait for it. Its CancelledError is gathered, not raised:
        suppressing CancelledError here would also swallow a cancel of *this* task (a
        worker being stopped mid-rebalance), which then never stopped."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
