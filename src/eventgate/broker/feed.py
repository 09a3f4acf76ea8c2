"""The log as the projections read it, from JetStream instead of the store.

The relay put every event on the app's stream in the store's order, so reading the stream
from the first message past a checkpoint gives the same batches the store would. Where the
stream does not hold the next event the store has after the checkpoint (a stream created
after events were stored, or trimmed by limits), the feed reads the store instead, and says
so: a projection never skips an event because the broker lacks it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from eventgate.broker.connection import Broker
from eventgate.broker.wire import decode
from eventgate.eventstore.model import RecordedEvent, Scanned
from eventgate.eventstore.protocol import EventStore

__all__ = ["JetStreamFeed"]

log = logging.getLogger("eventgate.broker")
FETCH_WAIT = 1.0
"""Seconds a pull request waits for messages."""
IDLE_CHECK = 10
"""Empty fetches after which the feed checks that its consumer still exists."""
CONSUMER_IDLE = 60.0
"""Seconds without a pull after which the server drops the feed's consumer."""
LOOK_BACK = 5.0
"""Seconds between looks at the stream while the feed reads the store."""


class JetStreamFeed:
    """`subscribe_matching` of the event store, served from the broker."""

    def __init__(self, broker: Broker, store: EventStore) -> None:
        self._broker = broker
        self._store = store

    async def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]:
        """Batches of the events past `after` that `keep(stream_id, type)` accepts, each with
        the last position it covers, until cancelled. From the stream while it holds what
        comes next without a gap; else from the store, looking back at the stream now and
        then; a consumer the server dropped is made again."""
        on_store = False
        while True:
            start = await self._start_sequence(after)
            if start is None:
                if not on_store:
                    log.warning("the stream %s lacks the events after position %d; reading"
                                " the store", self._broker.layout.stream, after)  # fmt: skip
                on_store, looked = True, time.monotonic()
                batches = self._store.subscribe_matching(keep, after, batch_size)
            else:
                if on_store:
                    log.info("the stream %s holds what follows position %d again; reading it",
                             self._broker.layout.stream, after)  # fmt: skip
                on_store, batches = False, self._follow(keep, after, batch_size, start)
            try:
                async for scanned in batches:
                    after = scanned.position
                    yield scanned
                    if on_store and time.monotonic() - looked > LOOK_BACK:
                        break
            finally:
                await batches.aclose()  # type: ignore[attr-defined]

    async def _follow(
        self, keep: Callable[[str, str], bool], after: int, batch_size: int, start: int
    ) -> AsyncIterator[Scanned]:
        """The stream from sequence `start` on; ends where a message is missing (the stream
        was trimmed or purged) or the consumer is gone, for the caller to decide again."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=CONSUMER_IDLE,
            description="eventgate projections (ephemeral)",
        )
        layout = self._broker.layout
        subscription = await self._broker.js.pull_subscribe(
            layout.subjects, stream=layout.stream, config=config
        )
        expected, idle = start, 0
        try:
            while True:
                try:
                    batch = await subscription.fetch(batch_size, timeout=FETCH_WAIT)
                    idle = 0
                except TimeoutError:  # nats.errors.TimeoutError is one
                    idle += 1
                    if idle % IDLE_CHECK == 0 and not await _exists(subscription):
                        log.warning("the projections' consumer on %s is gone; again from"
                                    " position %d", layout.stream, after)  # fmt: skip
                        return
                    continue
                events, gap = [], False
                for message in batch:
                    if message.metadata.sequence.stream != expected:
                        log.warning("the stream %s skips from sequence %d to %d (trimmed?);"
                                    " again from position %d", layout.stream, expected,
                                    message.metadata.sequence.stream, after)  # fmt: skip
                        gap = True
                        break
                    expected += 1
                    event = _event(message)
                    if event is not None and event.position > after:
                        events.append(event)
                if events:
                    after = events[-1].position
                    yield Scanned([e for e in events if keep(e.stream_id, e.type)], after)
                if gap:
                    return
        finally:
            await subscription.unsubscribe()

    async def _start_sequence(self, after: int) -> int | None:
        """The stream sequence of the store's next event after `after` (one past the last
        when the stream holds all there is), or None if the stream does not hold it."""
        try:
            return await self._search(after)
        except NotFoundError:  # a message deleted inside the stream: not one to follow
            return None

    async def _search(self, after: int) -> int | None:
        js, stream = self._broker.js, self._broker.layout.stream
        following = await self._store.read_all(after, limit=1)
        info = await js.stream_info(stream)
        low, high = info.state.first_seq, info.state.last_seq
        if info.state.messages == 0:
            return None if following else max(high + 1, 1)
        if await self._position(low) > after:  # the stream starts past the checkpoint
            first = await self._position(low)
            return low if following and following[0].position == first else None
        while low < high:  # the first sequence whose position lies past `after`
            middle = (low + high + 1) // 2
            if await self._position(middle) <= after:
                low = middle
            else:
                high = middle - 1
        return low + 1  # messages up to `low` are at or before `after`

    async def _position(self, sequence: int) -> int:
        message = await self._broker.js.get_msg(self._broker.layout.stream, sequence)
        return int((message.headers or {})["ce-sequence"])


async def _exists(subscription: JetStreamContext.PullSubscription) -> bool:
    try:
        await subscription.consumer_info()
    except NotFoundError:
        return False
    return True


def _event(message: Msg) -> RecordedEvent | None:
    try:
        return decode(dict(message.headers or {}), message.data)
    except (KeyError, ValueError) as e:
        log.error("a message on %s is not an eventgate event (%s); skipped", message.subject, e)
        return None
