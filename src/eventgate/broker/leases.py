"""Partitions shared among function workers through the broker itself (a JetStream
key-value bucket), so delivery over the broker needs no shared database lease.

Each worker writes `w.<worker>` every heartbeat; each partition it runs is a key
`p.<partition>` holding its id, created only if absent (`create`), renewed only at the
revision it last wrote (`update(last=...)`), deleted the same way. Every entry lives `ttl`
seconds after its last write (the bucket's max age), so a dead worker's partitions free
themselves. A worker keeps at most its fair share (partitions over live workers). The
runner's delivery does not rest on the lease alone: JetStream hands each message of a
consumer to one fetcher at a time and redelivers what is not acked. A stopping worker gives
its leases back within LEAVE_WITHIN seconds, or not at all when the broker is away (each
request would wait out its timeout): what it could not give back lapses with the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import Iterable

from nats.js.errors import (
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from eventgate.broker.connection import Broker
from eventgate.functions.state import Lease

__all__ = ["BrokerLeases"]

log = logging.getLogger("eventgate.broker")
_KEY = re.compile(r"[^-/_=.a-zA-Z0-9]")
LEAVE_WITHIN = 2.0
"""Seconds a stopping worker spends giving its leases back (the rest lapse with the TTL)."""


class BrokerLeases:
    """The partition leases of function workers, in a bucket of `broker`."""

    def __init__(self, broker: Broker, partitions: int) -> None:
        self._broker = broker
        self.partitions = partitions
        self._bucket: KeyValue | None = None
        self._ttl = 0.0
        self._held: dict[int, int] = {}  # partition -> revision we wrote

    async def rebalance(self, worker: str, ttl: float, release: Iterable[int] = ()) -> Lease:
        """Beat, give back `release`, renew the rest, claim free ones up to the fair share."""
        bucket = await self._open(ttl)
        me = _KEY.sub("_", worker)
        await bucket.put(f"w.{me}", b"")
        for p in release:
            revision = self._held.pop(p, None)
            if revision is not None:
                with contextlib.suppress(BadRequestError):  # taken over: not ours to delete
                    await bucket.delete(f"p.{p}", last=revision)
        for p, revision in list(self._held.items()):
            try:
                self._held[p] = await bucket.update(f"p.{p}", me.encode(), last=revision)
            except KeyWrongLastSequenceError:
                log.warning("worker %s lost partition %d (its lease lapsed)", worker, p)
                del self._held[p]
        try:
            keys = await bucket.keys()
        except NoKeysError:
            keys = []
        live = max(sum(key.startswith("w.") for key in keys), 1)
        taken = {key for key in keys if key.startswith("p.")}
        fair = math.ceil(self.partitions / live)
        for p in range(self.partitions):
            if len(self._held) >= fair:
                break
            if p not in self._held and f"p.{p}" not in taken:
                # someone else's after all, or it expired between two requests of `create`
                with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
                    self._held[p] = await bucket.create(f"p.{p}", me.encode())
        return Lease(frozenset(self._held), fair)

    async def leave(self, worker: str) -> None:
        """Give back every partition and the heartbeat (what fails lapses with the TTL)."""
        if self._bucket is None:
            return
        held, self._held = self._held, {}
        if not self._broker.client.is_connected:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEAVE_WITHIN):
                for p, revision in held.items():
                    with contextlib.suppress(Exception):
                        await self._bucket.delete(f"p.{p}", last=revision)
                with contextlib.suppress(Exception):
                    await self._bucket.delete(f"w.{_KEY.sub('_', worker)}")

    async def _open(self, ttl: float) -> KeyValue:
        if self._bucket is None:
            self._ttl = ttl
            self._bucket = await self._broker.js.create_key_value(
                bucket=f"{self._broker.layout.stream}_WORKERS", history=1, ttl=ttl
            )
        return self._bucket
