"""Clearing what a function removed for good left behind: its state in the function store
and, with a broker, its JetStream consumers and counts of failed attempts.

A deleted webhook subscription is purged this way (by the admin API at once, and by every
functions worker once its runner of it stopped), and so is an app function an operator
removed from the code (`eventgate functions purge`).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventgate.broker.connection import Broker, BrokerError
from eventgate.broker.consumer import consumer_functions, delete_consumers
from eventgate.functions.state import FunctionStore

__all__ = ["FunctionPurge", "Purged"]


@dataclass(frozen=True)
class Purged:
    """What one purge deleted: rows of the function store, consumers on the broker."""

    rows: int
    consumers: int

    def __bool__(self) -> bool:
        return bool(self.rows or self.consumers)


class FunctionPurge:
    """Purges functions from `functions` and, when given, from `broker`."""

    def __init__(self, functions: FunctionStore, broker: Broker | None = None) -> None:
        self._functions = functions
        self._broker = broker

    async def __call__(self, function: str) -> Purged:
        """Delete all of `function`; the broker's part first, so a failure there (the
        broker away) leaves the store's rows too and the purge is tried again whole."""
        consumers = 0
        if self._broker is not None:
            if not self._broker.client.is_connected:
                raise BrokerError("the broker is not connected")
            consumers = await delete_consumers(self._broker, function)
        return Purged(await self._functions.purge(function), consumers)

    async def residue(self) -> set[str]:
        """Every function something is kept of: in the store, or with consumers."""
        names = await self._functions.names()
        if self._broker is not None and self._broker.client.is_connected:
            names |= await consumer_functions(self._broker)
        return names
