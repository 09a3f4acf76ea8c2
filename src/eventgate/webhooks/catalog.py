"""The webhooks a functions worker runs: one function per enabled subscription, re-read
from the store every heartbeat, so subscriptions made, changed, disabled or deleted over the
admin API are picked up by every worker while it runs."""

from __future__ import annotations

from eventgate.functions.api import Function
from eventgate.webhooks.delivery import Delivery, Sender
from eventgate.webhooks.store import WebhookStore

__all__ = ["CONCURRENCY", "MAX_BACKOFF", "WebhookCatalog"]

CONCURRENCY = 16
"""Streams of one subscription delivered at once per worker (each stream one at a time)."""
MAX_BACKOFF = 25.0
"""Seconds between retries at most; below JetStream's ack wait (30 s), which a longer
backoff would stretch, and with it the wait for a dead worker's partitions."""


class WebhookCatalog:
    """The current webhook functions. An unchanged subscription keeps its Function object;
    a changed one (a new version) gets a new one, which the worker takes for a restart."""

    def __init__(self, store: WebhookStore, source: str, sender: Sender) -> None:
        self._store = store
        self._source = source
        self._sender = sender
        self._known: dict[str, tuple[int, Function, Delivery]] = {}

    async def functions(self) -> list[Function]:
        known: dict[str, tuple[int, Function, Delivery]] = {}
        for s in await self._store.all():
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

    async def close(self) -> None:
        await self._sender.close()
