"""The webhooks a functions worker runs: one function per enabled subscription, re-read
from the store every heartbeat, so subscriptions made, changed, disabled or deleted over the
admin API are picked up by every worker while it runs.

A deleted subscription's function is purged (webhooks/purge.py) by every worker once its
own runner of it has stopped: a runner still going for up to a heartbeat after the DELETE
may save checkpoints, dead letters or (on a broker) make a consumer again after the admin
API's purge, and its worker's purge comes after that. What a purge could not reach (the
database or broker away, a worker killed in between) a sweep finds: at a worker's start and
every SWEEP_EVERY seconds, anything kept of a `webhook.` function with no subscription."""

from __future__ import annotations

import asyncio
import logging
import math

from eventgate.functions.api import Function
from eventgate.webhooks.delivery import Delivery, Sender
from eventgate.webhooks.model import PREFIX
from eventgate.webhooks.purge import FunctionPurge
from eventgate.webhooks.store import WebhookStore

__all__ = ["CONCURRENCY", "MAX_BACKOFF", "SWEEP_EVERY", "WebhookCatalog"]

log = logging.getLogger("eventgate.functions")

CONCURRENCY = 16
"""Streams of one subscription delivered at once per worker (each stream one at a time)."""
MAX_BACKOFF = 25.0
"""Seconds between retries at most; below JetStream's ack wait (30 s), which a longer
backoff would stretch, and with it the wait for a dead worker's partitions."""
SWEEP_EVERY = 60.0
"""Seconds between two looks for what deleted subscriptions left behind."""


class WebhookCatalog:
    """The current webhook functions. An unchanged subscription keeps its Function object;
    a changed one (a new version) gets a new one, which the worker takes for a restart."""

    def __init__(
        self, store: WebhookStore, source: str, sender: Sender, purge: FunctionPurge | None = None
    ) -> None:
        """Without `purge`, deleted subscriptions leave their functions' state behind."""
        self._store = store
        self._source = source
        self._sender = sender
        self._known: dict[str, tuple[int, Function, Delivery]] = {}
        self._purge = purge
        self._ids: set[str] | None = None  # every subscription at the last read
        self._doomed: set[str] = set()  # functions of deleted subscriptions, to purge
        self._failed: set[str] = set()  # of those, the ones whose purge failed (warned)
        self._swept = -math.inf

    async def functions(self) -> list[Function]:
        known: dict[str, tuple[int, Function, Delivery]] = {}
        subscriptions = await self._store.all()
        ids = {s.id for s in subscriptions}
        if self._ids is not None:  # ids are never used again: one gone is deleted
            self._doomed |= {PREFIX + gone for gone in self._ids - ids}
        self._ids = ids
        for s in subscriptions:
            if not s.enabled:
                continue
            entry = self._known.get(s.id)
            if entry is None or entry[0] != s.version:
                delivery = Delivery(s, self._sender, self._source, self._store)
                function = Function(
                    name=s.function,
                    handler=delivery,
                    on=s.types,
                    retries=s.retries,
                    timeout=self._sender.timeout + 2.0,
                    concurrency=CONCURRENCY,
                    backoff=s.backoff,
                    max_backoff=MAX_BACKOFF,
                )
                entry = (s.version, function, delivery)
            entry[2].failing = s.failing
            known[s.id] = entry
        self._known = known
        return [function for _, function, _ in known.values()]

    async def retire(self) -> None:
        """Purge the functions of deleted subscriptions; the worker calls it after stopping
        the runners of the functions that `functions` dropped. Now and then, first look for
        what deleted subscriptions left behind."""
        if self._purge is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            self._doomed |= await self._leftovers(self._purge)
        for name in sorted(self._doomed):
            try:
                purged = await self._purge(name)
            except Exception as e:  # the database or the broker away: again next heartbeat
                if name not in self._failed:
                    log.warning("purging %s failed (%r); trying again", name, e)
                    self._failed.add(name)
                continue
            self._doomed.discard(name)
            self._failed.discard(name)
            if purged:
                log.info("purged %s: %d stored rows, %d consumers", name, purged.rows,
                         purged.consumers)  # fmt: skip

    async def _leftovers(self, purge: FunctionPurge) -> set[str]:
        """Webhook functions something is kept of and whose subscription is gone; the
        subscriptions are read after the residue, so one made meanwhile counts as live."""
        kept = {name for name in await purge.residue() if name.startswith(PREFIX)}
        return kept - {s.function for s in await self._store.all()}

    async def close(self) -> None:
        await self._sender.close()
