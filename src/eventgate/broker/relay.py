"""The relay: every stored event onto the app's JetStream stream, in the store's order,
exactly once as consumers see it.

Why it is correct:
- It resumes after the last event the stream already holds (read back from the stream's last
  message) or its checkpoint, whichever is further, so nothing acknowledged is sent again
  after a crash, and nothing is skipped: the checkpoint moves only past acked events. It
  first checks that this last event is the store's own at that position (a stream filled
  from another store would make it skip events).
- Each message names the message that must precede it on the stream: the event before it
  (`Nats-Expected-Last-Msg-Id`), or for the first one after a (re)start the stream sequence
  just read back (`Nats-Expected-Last-Sequence`). Messages go out pipelined; if one is
  refused or lost, the next finds another predecessor and is refused too, and so on, so the
  stream never holds a gap or a reordering. A second relay that lost its lease without
  noticing is fenced the same way: its messages find other predecessors than they name.
- `Nats-Msg-Id` is the event id: inside the duplicate window JetStream also drops a repeat.
- One relay runs at a time (a lease in the process registry); the fence above makes two
  harmless, the lease makes them rare.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from eventgate.broker.connection import Broker, BrokerError
from eventgate.broker.wire import encode
from eventgate.eventstore.model import RecordedEvent
from eventgate.eventstore.protocol import EventStore

__all__ = ["CHECKPOINT_KEY", "Relay", "StreamMismatch"]

log = logging.getLogger("eventgate.broker")

CHECKPOINT_KEY = "relay.checkpoint"
"""Key of the relay's checkpoint in the app's state bucket on the broker."""


MISMATCH_PAUSE = 30


class StreamMismatch(BrokerError):
    """The app's stream holds events this store does not: relaying on would skip events."""


class Relay:
    """Publishes the store's events to the broker until cancelled."""

    def __init__(
        self, store: EventStore, broker: Broker, *, batch_size: int = 1000, ack_timeout: float = 10
    ) -> None:
        self._store = store
        self._broker = broker
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout
        self.position = 0
        """The last position known to be on the broker."""
        self._acks = _Acks(broker.client)

    async def checkpoint(self) -> int:
        """The stored checkpoint (0 if none)."""
        return await checkpoint(self._broker)

    async def run(self) -> None:
        """Relay, and after any failure (broker down, a refused message) start over from
        what the broker holds, a second later."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except StreamMismatch as e:
                log.error("relay: %s; looking again in %d s", e, MISMATCH_PAUSE)
                await asyncio.sleep(MISMATCH_PAUSE)
            except Exception as e:
                cause = e.exceptions[0] if isinstance(e, ExceptionGroup) else e
                log.warning("relay: %s; resuming from the broker's last event in 1 s", cause)
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        """Send each batch as soon as it is read; a second task confirms the batches in
        order and moves the checkpoint, so reading and sending overlap the acks."""
        broker = self._broker
        info = await broker.js.stream_info(broker.layout.stream)
        sequence = info.state.last_seq
        last = await broker.last_event()
        if last is not None:
            await self._check_same_log(*last)
        self.position = max(await self.checkpoint(), last[0] if last else 0)
        log.info("relay: from position %d (stream sequence %d)", self.position, sequence)
        after: str | int = sequence
        sent: asyncio.Queue[tuple[list[RecordedEvent], list[_Ack]]] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._confirm_all(sent))
                async for batch in self._store.subscribe(self.position, self._batch_size):
                    await sent.put((batch, await self._send(batch, after)))
                    after = batch[-1].id
        finally:
            self._acks.forget()

    async def _check_same_log(self, position: int, event_id: str) -> None:
        """The stream's last event must be the store's event at that position: a stream
        filled from another store (or from this one before a restore) would make the relay
        skip what this store holds past that position."""
        found = await self._store.read_all(position - 1, limit=1)
        if not found or found[0].position != position or found[0].id != event_id:
            raise StreamMismatch(
                f"stream {self._broker.layout.stream} ends with event {event_id} at position"
                f" {position}, which this store does not hold there: another store (or this"
                " one restored from a backup) filled it; delete the stream or use another app"
                " name"
            )

    async def _confirm_all(
        self, sent: asyncio.Queue[tuple[list[RecordedEvent], list[_Ack]]]
    ) -> None:
        while True:
            batch, pending = await sent.get()
            await self._confirm(batch, pending)
            self.position = batch[-1].position
            await self._broker.state.put(CHECKPOINT_KEY, str(self.position).encode())

    async def _publish(self, batch: list[RecordedEvent], after: str | int) -> None:
        """Send and confirm one batch (see `_send`)."""
        try:
            await self._confirm(batch, await self._send(batch, after))
        finally:
            self._acks.forget()

    async def _send(self, batch: list[RecordedEvent], after: str | int) -> list[_Ack]:
        """Publish `batch` after the message with id `after` (or at stream sequence `after`);
        the acks to come."""
        layout = self._broker.layout
        pending = []
        for event in batch:
            subject, body, headers = encode(layout, event)
            if isinstance(after, int):
                headers["Nats-Expected-Last-Sequence"] = str(after)
            else:
                headers["Nats-Expected-Last-Msg-Id"] = after
            pending.append(await self._acks.publish(subject, body, headers))
            after = event.id
        return pending

    async def _confirm(self, batch: list[RecordedEvent], pending: list[_Ack]) -> None:
        """Raises unless every message of `batch` is stored."""
        async with asyncio.timeout(self._ack_timeout):
            acks = await asyncio.gather(*pending)
        for event, ack in zip(batch, acks, strict=True):
            if "error" in ack:
                error = ack["error"].get("description", ack["error"])
                raise RuntimeError(f"the broker refused event {event.position}: {error}")
            if ack.get("duplicate"):
                raise RuntimeError(f"event {event.position} was on the broker already")


_Ack = asyncio.Future[dict[str, Any]]


class _Acks:
    """Pipelined JetStream publishes and their acks, as `js.publish_async` would do but for
    one thing: nats-py 2.16 raises inside its reply callback on an error ack and never
    settles that future, where the relay must see the refusal at once."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._prefix = ""
        self._tokens = itertools.count()
        self._waiting: dict[str, _Ack] = {}

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> _Ack:
        if not self._prefix:
            self._prefix = self._client.new_inbox()
            await self._client.subscribe(f"{self._prefix}.*", cb=self._reply)
        token = str(next(self._tokens))
        future = self._waiting[token] = asyncio.get_running_loop().create_future()
        await self._client.publish(subject, body, f"{self._prefix}.{token}", headers)
        return future

    def forget(self) -> None:
        """Drop the acks still awaited (after a timeout: they will not be counted)."""
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def _reply(self, message: Msg) -> None:
        future = self._waiting.pop(message.subject.rsplit(".", 1)[1], None)
        if future is None or future.done():
            return
        if (message.headers or {}).get("Status") == "503":
            future.set_result({"error": {"description": "no stream takes this subject"}})
            return
        try:
            future.set_result(orjson.loads(message.data))
        except orjson.JSONDecodeError:
            future.set_result({"error": {"description": f"unreadable ack {message.data!r}"}})


async def checkpoint(broker: Broker) -> int:
    """The relay's stored checkpoint on `broker` (0 if none)."""
    try:
        entry = await broker.state.get(CHECKPOINT_KEY)
    except Exception:  # KeyNotFoundError, or a deleted key
        return 0
    return int(entry.value or 0)
