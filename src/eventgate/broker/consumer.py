"""One function consuming its events from JetStream: a durable pull consumer per partition.

Why it is correct:
- A partition's consumer (`<function>-p<partition>`, filtered on the partition's subjects)
  is fetched by the one worker holding the partition's lease (broker/leases.py); the relay
  put a stream's events on its partition in the store's order.
- Each stream has one lane, ordered by stream sequence: its events run one at a time. A
  failed attempt is nak'd with the function's backoff, and the events behind it in its lane
  wait for its redelivery (kept alive with progress acks), so a stream's order holds
  through retries. The ack wait is longer than any backoff: after a crash the nak'd event
  comes back before the ones that waited behind it.
- A worker that takes a partition over runs nothing of it until every message its last
  holder had in hand and left unacked (a kill -9) has come back to it (the consumer's
  unacked count equals what it holds): otherwise a later event of a stream, never
  delivered before, would run before an earlier one still out with the dead worker. After a
  crash the partition therefore waits up to the ack wait; a clean handover naks at once.
- Ack after success (synchronously when the attempt recorded effects, before they are
  forgotten); after the function's last attempt, or a DeadLetter, the event goes to the same
  dead-letter store as without a broker and is terminated on the consumer.
- A delivery is not an attempt: a handover or a crash redelivers without one. So the worker
  counts failed attempts itself (a key per failing event in a bucket on the broker, read
  only on a redelivery) and the consumer's `max_deliver` is unlimited: a server-side limit
  would drop an event after a few handovers, unrun and not dead-lettered.
- Backpressure: at most `max_pending` unacked messages per consumer (`max_ack_pending`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue

from eventgate.broker.connection import Broker
from eventgate.broker.wire import decode
from eventgate.functions.api import Function, FunctionEvent
from eventgate.functions.attempts import Failure, backoff, hold, invoke, park, surely, too_old
from eventgate.functions.context import Context, Services
from eventgate.functions.runner import every
from eventgate.metrics.families import FUNCTION_RETRIES

__all__ = [
    "JetStreamRunner",
    "consumer_functions",
    "consumer_lag",
    "consumer_name",
    "delete_consumers",
]

log = logging.getLogger("eventgate.functions")
T = TypeVar("T")
_NAME = re.compile(r"[^A-Za-z0-9_-]")
_DESCRIBED = re.compile(r"^eventgate function (\S+), partition \d+$")  # see _subscribe
ACK_WAIT = 30.0
"""Seconds an unacked message waits before redelivery (at least; see `_ack_wait`)."""
ATTEMPTS_TTL = 7 * 24 * 3600.0
"""Seconds a count of failed attempts is kept without a new failure (a week)."""
FETCH_WAIT = 1.0
IDLE_CHECK = 10
"""Empty fetches after which a fetcher checks that its consumer still exists (a fetch
against a deleted consumer only ever times out)."""
"""Seconds a pull request waits for messages: also how long a handover waits for the last."""


def consumer_name(function: str, partition: int) -> str:
    return f"{_NAME.sub('_', function)}-p{partition}"


async def consumer_lag(broker: Broker, function: str, partitions: int) -> int | None:
    """Messages of `function`'s consumers not yet acked (pending and in flight); None
    before any worker created them."""
    total, found = 0, False
    for p in range(partitions):
        try:
            info = await broker.js.consumer_info(broker.layout.stream, consumer_name(function, p))
        except nats.js.errors.NotFoundError:
            continue
        found = True
        total += (info.num_pending or 0) + (info.num_ack_pending or 0)
    return total if found else None


async def delete_consumers(broker: Broker, function: str) -> int:
    """Delete `function`'s consumers and its counts of failed attempts from the broker (a
    function removed for good); how many consumers there were. A runner of it still
    fetching makes its partition's consumer again: purge once more after it stopped."""
    stream, deleted = broker.layout.stream, 0
    for p in range(broker.layout.partitions):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            deleted += await broker.js.delete_consumer(stream, consumer_name(function, p))
    await _Attempts(broker, function).forget_all()
    return deleted


async def consumer_functions(broker: Broker) -> set[str]:
    """The functions that have consumers on the app's stream (from their descriptions)."""
    found: set[str] = set()
    listed = 0
    while True:  # a page holds at most 256
        page = await broker.js.consumers_info(broker.layout.stream, offset=listed)
        if not page:
            return found
        listed += len(page)
        found |= {m[1] for info in page if (m := _DESCRIBED.match(info.config.description or ""))}


class _Attempts:
    """Failed attempts of the events of one function that are being retried, on the broker
    (a bucket key per event, gone once it succeeds or is dead-lettered)."""

    def __init__(self, broker: Broker, function: str) -> None:
        self._broker = broker
        self._prefix = f"{_NAME.sub('_', function)}."
        self._bucket: KeyValue | None = None

    async def failed(self, event_id: str) -> int:
        try:
            entry = await (await self._open()).get(self._prefix + _key(event_id))
        except (KeyNotFoundError, KeyDeletedError):
            return 0
        return int(entry.value or 0)

    async def count(self, event_id: str, failed: int) -> None:
        await (await self._open()).put(self._prefix + _key(event_id), str(failed).encode())

    async def forget(self, event_id: str) -> None:
        await (await self._open()).purge(self._prefix + _key(event_id))

    async def forget_all(self) -> None:
        """Every count of the function (it is removed for good)."""
        bucket = await self._open()
        try:
            keys = await bucket.keys(filters=[self._prefix])
        except NoKeysError:
            return
        for key in keys:
            if key.startswith(self._prefix):
                await bucket.purge(key)

    async def _open(self) -> KeyValue:
        if self._bucket is None:
            self._bucket = await self._broker.js.create_key_value(
                bucket=f"{self._broker.layout.stream}_ATTEMPTS", history=1, ttl=ATTEMPTS_TTL
            )
        return self._bucket


def _key(event_id: str) -> str:
    return re.sub(r"[^-_=a-zA-Z0-9]", "_", event_id)


@dataclass(eq=False)
class _Held:
    """An event this worker holds: its message (None while nak'd and awaited back), or a
    dead letter being replayed (`letter`)."""

    key: tuple[int, int]  # (stream sequence, 0); a replay: (last sequence in its lane, n > 0)
    event: FunctionEvent
    msg: Msg | None
    letter: int | None = None


@dataclass(eq=False)
class _Lane:
    partition: int
    keys: list[tuple[int, int]] = field(default_factory=list)
    held: dict[tuple[int, int], _Held] = field(default_factory=dict)
    back: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class JetStreamRunner:
    """Runs one function on the partitions its worker leases, fed by JetStream."""

    def __init__(
        self,
        function: Function,
        services: Services,
        owner: str,
        partitions: int,
        *,
        broker: Broker,
        max_pending: int = 1000,
        fetch_batch: int = 100,
        replay_interval: float = 0.5,
        commit_interval: float = 0.2,
        **_: object,
    ) -> None:
        self.function = function
        self._services = services
        self._owner = owner
        self._partitions = partitions
        self._broker = broker
        self._max_pending = max_pending
        self._fetch_batch = min(fetch_batch, max_pending)
        self._replay_interval = replay_interval
        self._commit_interval = commit_interval
        self._ack_wait = max(ACK_WAIT, function.max_backoff + 5.0)
        self._slots = asyncio.Semaphore(function.concurrency)
        self._fetchers: dict[int, asyncio.Task[None]] = {}
        self._fetching: set[int] = set()  # partitions whose fetcher should go on
        self._settled: dict[int, asyncio.Event] = {}  # set: nothing of it is out elsewhere
        self._lanes: dict[str, _Lane] = {}
        self._replaying: set[int] = set()
        self._forget: list[str] = []
        self._counts = [0, 0]
        self._background: list[asyncio.Task[None]] = []
        self._attempts = _Attempts(broker, function.name)

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._fetchers)

    @property
    def pending(self) -> int:
        return sum(len(lane.held) for lane in self._lanes.values())

    def start(self) -> None:
        self._background = [
            asyncio.create_task(every(self._ack_wait / 3, self._keep_alive, self.function.name)),
            asyncio.create_task(every(self._commit_interval, self.commit, self.function.name)),
            asyncio.create_task(
                every(self._replay_interval, self._poll_replays, self.function.name)
            ),
        ]

    async def assign(self, owned: frozenset[int]) -> None:
        """Fetch exactly the partitions `owned`; what this worker held of the others goes
        back to the broker at once (nak), for their next owner."""
        lost, gained = self.owned - owned, owned - self.owned
        if lost:
            await self._drop(lost)
        for p in sorted(gained):
            name = consumer_name(self.function.name, p)
            self._settled[p] = asyncio.Event()
            self._fetching.add(p)
            self._fetchers[p] = asyncio.create_task(self._fetch(p), name=name)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._drop(self.owned)
        await self.commit()

    # -- fetching ---------------------------------------------------------------------------

    async def _fetch(self, partition: int) -> None:
        while partition in self._fetching:
            try:
                subscription = await self._subscribe(partition)
                try:
                    await self._pull(partition, subscription)
                finally:
                    await subscription.unsubscribe()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("%s: fetching partition %d failed (%r); again in 1 s",
                            self.function.name, partition, e)  # fmt: skip
                await asyncio.sleep(1.0)

    async def _pull(self, partition: int, subscription: JetStreamContext.PullSubscription) -> None:
        """Fetch until the partition is given up; what the last fetch brings then goes back."""
        settled, idle = self._settled[partition], 0
        while True:
            try:
                messages = await subscription.fetch(self._fetch_batch, timeout=FETCH_WAIT)
                idle = 0
            except TimeoutError:  # nats.errors.TimeoutError is one
                messages, idle = [], idle + 1
            if idle and idle % IDLE_CHECK == 0:
                await subscription.consumer_info()  # NotFoundError: made again by _fetch
            if partition not in self._fetching:
                for message in messages:
                    await message.nak()
                return
            for message in messages:
                await self._accept(partition, message)
            if not settled.is_set():
                info = await subscription.consumer_info()
                if (info.num_ack_pending or 0) <= self._in_hand(partition):
                    settled.set()

    async def _subscribe(self, partition: int) -> JetStreamContext.PullSubscription:
        layout, function = self._broker.layout, self.function
        name = consumer_name(function.name, partition)
        config = ConsumerConfig(
            durable_name=name,
            description=f"eventgate function {function.name}, partition {partition}",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=-1,
            max_ack_pending=self._max_pending,
        )
        return await self._broker.js.pull_subscribe(
            layout.partition_subjects(partition), durable=name, stream=layout.stream, config=config
        )

    async def _accept(self, partition: int, message: Msg) -> None:
        try:
            event = decode(dict(message.headers or {}), message.data)
        except (KeyError, ValueError) as e:
            log.error("%s: message %s is not an eventgate event (%s); terminated",
                      self.function.name, message.reply, e)  # fmt: skip
            await message.term()
            return
        if not self.function.wants(event.type):
            await message.ack()
            return
        self._hold(partition, _Held((message.metadata.sequence.stream, 0), event, message))

    def _in_hand(self, partition: int) -> int:
        lanes = [lane for lane in self._lanes.values() if lane.partition == partition]
        return sum(h.msg is not None for lane in lanes for h in lane.held.values())

    def _hold(self, partition: int, held: _Held) -> None:
        lane = self._lanes.get(held.event.stream_id)
        if lane is None:
            lane = self._lanes[held.event.stream_id] = _Lane(partition)
            lane.task = asyncio.create_task(self._drain(held.event.stream_id, lane))
        if held.key not in lane.held:
            bisect.insort(lane.keys, held.key)
        lane.held[held.key] = held  # a redelivery replaces the copy held (its ack is live)
        lane.back.set()

    # -- one lane: a stream's events in order -------------------------------------------

    async def _drain(self, stream_id: str, lane: _Lane) -> None:
        try:
            await self._settled[lane.partition].wait()
            while lane.keys:
                head = lane.held[lane.keys[0]]
                if head.msg is None and head.letter is None:  # nak'd: wait for it
                    lane.back.clear()
                    await lane.back.wait()
                    continue
                try:
                    done = await self._process(lane.partition, head)
                except Exception as e:  # a bug of ours: the lane stays, its events held
                    log.exception("%s: stream %s: %r; trying its event again in 1 s",
                                  self.function.name, stream_id, e)  # fmt: skip
                    await asyncio.sleep(1.0)
                    continue
                if done:
                    del lane.held[lane.keys.pop(0)]
                else:
                    head.msg = None
        finally:
            if self._lanes.get(stream_id) is lane:
                del self._lanes[stream_id]

    async def _process(self, partition: int, held: _Held) -> bool:
        """One attempt; True when the event is done with (succeeded or dead-lettered). Each
        step on the broker or the database is retried until it succeeds (`_surely`): the
        lane keeps its events meanwhile, so nothing of the stream overtakes them."""
        if held.letter is not None:
            return await self._replay(partition, held)
        msg, event, function = held.msg, held.event, self.function
        assert msg is not None
        failed = 0
        if msg.metadata.num_delivered > 1:
            failed = await self._surely("read attempts", self._attempts.failed, event.id)
        attempt, first = failed + 1, datetime.now(UTC)
        async with self._slots:
            failure = too_old(function, event, replay=False)
            if failure is None:
                ctx = Context(function.name, event, attempt, self._services)
                outcome = await invoke(function, ctx)
                self._counts[0] += 1
                if outcome is None:
                    await self._acked(msg, ctx)
                    if failed:
                        await self._surely("forget attempts", self._attempts.forget, event.id)
                    return True
                self._counts[1] += 1
                ctx.logger.warning("%s attempt %d failed: %s: %s", function.name, attempt,
                                   outcome.error_type, outcome.message)  # fmt: skip
                failure = outcome
        if failure.held:  # kept alive, unacked, until this runner is stopped (then nak'd)
            await hold(function, event, failure)
        if failure.final or attempt > function.retries or failure.error_type == "EventTooOld":
            await self._give_up(partition, held, failure, attempt, first)
            if failed:
                await self._surely("forget attempts", self._attempts.forget, event.id)
            return True
        await self._surely("count attempts", self._attempts.count, event.id, attempt)
        FUNCTION_RETRIES.labels(function.name).inc()
        delay = failure.delay if failure.delay is not None else backoff(function, attempt)
        await self._surely("nak", msg.nak, min(delay, self._ack_wait - 5.0))
        return False

    async def _acked(self, msg: Msg, ctx: Context) -> None:
        """Ack; when the attempt recorded effects, a confirmed ack, after which its records
        may go (if no confirmation comes, a plain ack, and the records stay)."""
        if ctx.effects_recorded:
            try:
                await msg.ack_sync(timeout=5.0)
                self._forget.append(ctx.event.id)
                return
            except Exception as e:
                log.warning("%s: no confirmation of an ack (%r); acking again", ctx.function, e)
        await self._surely("ack", msg.ack)

    async def _give_up(
        self, partition: int, held: _Held, failure: Failure, attempts: int, first: datetime
    ) -> None:
        await self._surely("dead-letter", park, self._services, self.function, partition,
                           held.event, failure, attempts, first)  # fmt: skip
        if held.msg is not None:
            await self._surely("term", held.msg.term)

    async def _surely(self, what: str, step: Callable[..., Awaitable[T]], *args: Any) -> T:
        return await surely(self.function.name, what, step, *args)

    async def _replay(self, partition: int, held: _Held) -> bool:
        """A dead letter an operator asked to run again: attempts in place, as without a
        broker; parked again if they all fail."""
        function, letter, first = self.function, held.letter, datetime.now(UTC)
        assert letter is not None
        try:
            attempt = 0
            while True:
                attempt += 1
                async with self._slots:
                    ctx = Context(function.name, held.event, attempt, self._services)
                    failure = await invoke(function, ctx)
                self._counts[0] += 1
                if failure is None:
                    await self._surely("replayed", self._services.functions.replayed, letter)
                    ctx.logger.info("dead letter %d replayed", letter)
                    return True
                self._counts[1] += 1
                if failure.held:  # still a dead letter to replay for the next runner
                    await hold(function, held.event, failure)
                if failure.final or attempt > function.retries:
                    await self._surely("dead-letter", park, self._services, function, partition,
                                       held.event, failure, attempt, first)  # fmt: skip
                    return True
                await asyncio.sleep(backoff(function, attempt))
        finally:
            self._replaying.discard(letter)

    async def _poll_replays(self) -> None:
        letters = await self._services.functions.replays(
            self.function.name, self.owned, self._replaying
        )
        for letter_id, p, event in letters:
            if p not in self._fetchers:
                continue
            self._replaying.add(letter_id)
            lane = self._lanes.get(event.stream_id)
            last = lane.keys[-1] if lane and lane.keys else (0, 0)
            self._hold(p, _Held((last[0], last[1] + 1), event, None, letter_id))

    # -- upkeep -----------------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Progress acks for every message held, so none is redelivered while it waits."""
        for lane in list(self._lanes.values()):
            for held in list(lane.held.values()):
                if held.msg is not None:
                    await held.msg.in_progress()

    async def commit(self) -> None:
        """Store the invocation counts, and forget the effects of acked events."""
        invocations, failures = self._counts
        if invocations:
            self._counts = [0, 0]
            await self._services.functions.save_progress(
                self.function.name, self._owner, {}, invocations, failures
            )
        forget, self._forget = self._forget, []
        if forget:
            await self._services.functions.forget_effects(self.function.name, forget)

    async def _drop(self, partitions: frozenset[int]) -> None:
        self._fetching -= partitions
        tasks = [self._fetchers.pop(p) for p in partitions if p in self._fetchers]
        _, late = await asyncio.wait(tasks, timeout=FETCH_WAIT + 2.0) if tasks else ((), ())
        for task in late:  # a fetch the broker does not answer: its messages come back later
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lanes = [lane for lane in self._lanes.values() if lane.partition in partitions]
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes if lane.task), return_exceptions=True)
        for lane in lanes:
            for held in lane.held.values():
                if held.msg is not None:
                    try:
                        await held.msg.nak()
                    except Exception as e:  # the connection may be gone: it comes back anyway
                        log.debug("nak on giving up a partition: %s", e)
                if held.letter is not None:
                    self._replaying.discard(held.letter)
        for p in partitions:
            self._settled.pop(p, None)
