"""The log as the projections read it, from JetStream instead of the store.

The relay put every event on the app's stream in the store's order, so reading the stream
from the first message past a checkpoint gives the same batches the store would. Where the
stream does not hold the next event the store has after the checkpoint (a stream created
after events were stored, or trimmed by limits), the feed reads the store instead, and says
so: a projection never skips an event because the broker lacks it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventgate.broker.connection import Broker
from eventgate.broker.wire import decode
from eventgate.eventstore.model import RecordedEvent, Scanned
from eventgate.eventstore.protocol import EventStore

__all__ = ["JetStreamFeed"]

log = logging.getLogger("eventgate.broker")
FETCH_WAIT = 1.0
"""Seconds a pull request waits for messages."""


class JetStreamFeed:
    """`subscribe_matching` of the event store, served from the broker."""

    def __init__(self, broker: Broker, store: EventStore) -> None:
        self._broker = broker
        self._store = store

    async def subscribe_matching(
        self, keep: Callable[[str, str], bool], after: int = 0, batch_size: int = 500
    ) -> AsyncIterator[Scanned]:
        """Batches of the events past `after` that `keep(stream_id, type)` accepts, each with
        the last position it covers, until cancelled."""
        start = await self._start_sequence(after)
        if start is None:
            log.warning("the stream %s lacks the events after position %d; reading the store",
                        self._broker.layout.stream, after)  # fmt: skip
            async for scanned in self._store.subscribe_matching(keep, after, batch_size):
                yield scanned
            return
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60.0,
            description="eventgate projections (ephemeral)",
        )
        subscription = await self._broker.js.pull_subscribe(
            self._broker.layout.subjects, stream=self._broker.layout.stream, config=config
        )
        try:
            while True:
                try:
                    batch = await subscription.fetch(batch_size, timeout=FETCH_WAIT)
                except TimeoutError:  # nats.errors.TimeoutError is one
                    continue
                events = [e for e in map(_event, batch) if e is not None]
                fresh = [e for e in events if e.position > after]
                if not fresh:
                    continue
                after = fresh[-1].position
                yield Scanned([e for e in fresh if keep(e.stream_id, e.type)], after)
        finally:
            await subscription.unsubscribe()

    async def _start_sequence(self, after: int) -> int | None:
        """The stream sequence of the store's next event after `after` (one past the last
        when the stream holds all there is), or None if the stream does not hold it."""
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


def _event(message: Msg) -> RecordedEvent | None:
    try:
        return decode(dict(message.headers or {}), message.data)
    except (KeyError, ValueError) as e:
        log.error("a message on %s is not an eventgate event (%s); skipped", message.subject, e)
        return None
