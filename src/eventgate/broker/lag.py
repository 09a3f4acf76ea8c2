"""How far the broker's side is behind the store: the relay, and each function's consumers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventgate.bootstrap import System, open_broker_of
from eventgate.broker.consumer import consumer_lag
from eventgate.broker.relay import checkpoint

__all__ = ["broker_lag"]


async def broker_lag(system: System, functions: Sequence[str]) -> dict[str, Any]:
    """The relay's checkpoint and lag (events stored and not yet on the broker), and per
    function the messages its consumers have not acked (None: no worker consumed yet)."""
    broker = await open_broker_of(system, "eventgate status")
    try:
        relayed = await checkpoint(broker)
        partitions = broker.layout.partitions
        return {
            "stream": broker.layout.stream,
            "relay": {"checkpoint": relayed, "lag": await system.store.count_after(relayed)},
            "functions": {f: await consumer_lag(broker, f, partitions) for f in functions},
        }
    finally:
        await broker.close()
