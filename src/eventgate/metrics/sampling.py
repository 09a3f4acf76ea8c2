"""Values read from the stores when Prometheus scrapes: checkpoints and lags, as the
process that runs the projections, functions or relay sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from eventgate.broker.connection import Broker
from eventgate.broker.consumer import consumer_lag
from eventgate.eventstore.protocol import EventStore
from eventgate.functions.state import FunctionStore
from eventgate.metrics.families import (
    FUNCTION_CHECKPOINT,
    FUNCTION_DEAD_LETTERS,
    FUNCTION_LAG_EVENTS,
    FUNCTION_LAG_SECONDS,
    PROJECTION_CHECKPOINT,
    PROJECTION_LAG_EVENTS,
    PROJECTION_LAG_SECONDS,
    PROJECTION_PARKED,
    RELAY_CHECKPOINT,
    RELAY_LAG_EVENTS,
)
from eventgate.projections.protocol import ReadStore

__all__ = ["Sampler"]

Sample = Callable[[], Awaitable[None]]


class Sampler:
    """What one process reads at each scrape; each part added by the role that owns it, so
    a series comes from one process (the one running that projection, function or relay)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._samples: list[Sample] = []

    async def sample(self) -> None:
        for sample in self._samples:
            await sample()

    def projections(self, read_store: ReadStore, held: Callable[[], frozenset[str]]) -> None:
        """Checkpoint, lag and parked streams of the projections `held()` names."""

        async def sample() -> None:
            parked = await read_store.parked_streams()
            for name in sorted(held()):
                checkpoint = await read_store.load_checkpoint(name)
                PROJECTION_CHECKPOINT.labels(name).set(checkpoint)
                await self._lag(PROJECTION_LAG_EVENTS.labels(name).set,
                                PROJECTION_LAG_SECONDS.labels(name).set, checkpoint)  # fmt: skip
                PROJECTION_PARKED.labels(name).set(sum(p.projection == name for p in parked))

        self._samples.append(sample)

    def functions(
        self, functions: FunctionStore, names: frozenset[str], broker: Broker | None = None
    ) -> None:
        """Dead letters of the functions `names` (this worker's), and their lag: from the
        stored checkpoints, or with a `broker` the messages their consumers have not acked
        (their progress lives on the broker then: no checkpoint, no lag in seconds)."""

        async def sample() -> None:
            for status in await functions.status():
                name = status.name
                if name not in names:
                    continue
                FUNCTION_DEAD_LETTERS.labels(name).set(status.dead_letters)
                if broker is None:
                    FUNCTION_CHECKPOINT.labels(name).set(status.checkpoint)
                    await self._lag(FUNCTION_LAG_EVENTS.labels(name).set,
                                    FUNCTION_LAG_SECONDS.labels(name).set,
                                    status.checkpoint)  # fmt: skip
                    continue
                unacked = await consumer_lag(broker, name, broker.layout.partitions)
                if unacked is not None:
                    FUNCTION_LAG_EVENTS.labels(name).set(unacked)

        self._samples.append(sample)

    def relay(self, checkpoint: Callable[[], Awaitable[int]]) -> None:
        """The relay's checkpoint on the broker and the events not yet published."""

        async def sample() -> None:
            relayed = await checkpoint()
            RELAY_CHECKPOINT.set(relayed)
            RELAY_LAG_EVENTS.set(await self._store.count_after(relayed))

        self._samples.append(sample)

    async def _lag(
        self, events: Callable[[float], None], seconds: Callable[[float], None], checkpoint: int
    ) -> None:
        events(await self._store.count_after(checkpoint))
        oldest = await self._store.read_all(after=checkpoint, limit=1)
        age = (datetime.now(UTC) - oldest[0].time).total_seconds() if oldest else 0.0
        seconds(max(age, 0.0))
