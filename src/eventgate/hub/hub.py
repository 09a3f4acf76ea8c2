"""The embedded event hub: named subscriptions that follow the store in global order."""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from eventgate.errors import ConfigError
from eventgate.eventstore.model import RecordedEvent
from eventgate.eventstore.protocol import EventStore
from eventgate.hub.checkpoints import CheckpointStore

__all__ = [
    "MAX_GLOB_CHARACTERS",
    "MAX_PATTERN",
    "MAX_STARS",
    "Delivery",
    "EventHub",
    "Subscription",
    "TypeFilter",
]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class TypeFilter:
    """Which event types a subscriber wants: exact names or globs (`Items*`, `*`).

    Clients choose the patterns (SSE `?type=`, WebSocket `types`), and compiling globs
    holds the event loop (50 patterns of 1,200 `*a` took 0.5 s), so a pattern is at most
    MAX_PATTERN characters with at most MAX_STARS `*`, the globs of one filter
    MAX_GLOB_CHARACTERS together (2.5 ms of compiling at worst); exact names are looked up
    in a set, and the regex of a set of globs is compiled once for all who ask for it.
    """

    def __init__(self, patterns: Iterable[str] | None = None) -> None:
        self.patterns = tuple(patterns) if patterns is not None else ("*",)
        if not self.patterns or not all(isinstance(p, str) and p for p in self.patterns):
            raise ConfigError("an event type filter needs at least one non-empty pattern")
        for pattern in self.patterns:
            if len(pattern) > MAX_PATTERN or pattern.count("*") > MAX_STARS:
                limit = f"at most {MAX_PATTERN} characters with at most {MAX_STARS} '*'"
                raise ConfigError(f"an event type pattern is {limit}: {pattern[:40]!r}...")
        globs = tuple(sorted({p for p in self.patterns if _GLOB.search(p)}))
        if sum(map(len, globs)) > MAX_GLOB_CHARACTERS:
            together = f"at most {MAX_GLOB_CHARACTERS} characters together"
            raise ConfigError(f"the globs of an event type filter are {together}")
        self._names = frozenset(p for p in self.patterns if not _GLOB.search(p))
        self._match = _compiled(globs) if globs else None

    def __call__(self, type_name: str) -> bool:
        if type_name in self._names:
            return True
        return self._match is not None and self._match(type_name) is not None


MAX_PATTERN = 200
MAX_STARS = 8
MAX_GLOB_CHARACTERS = 1000
_GLOB = re.compile(r"[*?\[]")


@functools.lru_cache(maxsize=512)
def _compiled(globs: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    return re.compile("|".join(fnmatch.translate(p) for p in globs)).match


@dataclass(frozen=True)
class Delivery:
    """A batch for one subscriber: the events it wants with position in (`after`, `position`].

    `position` is the last position *scanned*, which may lie past the last event kept by
    the filter; storing it as the checkpoint skips the filtered-out events for good.
    """

    after: int
    position: int
    events: list[RecordedEvent]


class Subscription:
    """One named subscriber's view of the log, resuming from its stored checkpoint.

    Iterating yields `Delivery`s in global order. The subscriber stores the checkpoint:
    with `commit` after handling a delivery, or in its own transaction (projections).
    """

    def __init__(
        self,
        store: EventStore,
        checkpoints: CheckpointStore,
        name: str,
        types: TypeFilter,
        batch_size: int,
    ) -> None:
        self.name = name
        self.types = types
        self._store = store
        self._checkpoints = checkpoints
        self._batch_size = batch_size

    async def checkpoint(self) -> int:
        """The stored checkpoint of this subscriber."""
        return await self._checkpoints.load_checkpoint(self.name)

    async def commit(self, delivery: Delivery) -> None:
        """Store `delivery` as handled."""
        await self._checkpoints.save_checkpoint(self.name, delivery.position)

    async def __aiter__(self) -> AsyncIterator[Delivery]:
        after = await self.checkpoint()
        async for batch in self._store.subscribe(after, self._batch_size):
            wanted = [event for event in batch if self.types(event.type)]
            delivery = Delivery(after, batch[-1].position, wanted)
            after = delivery.position
            yield delivery


class EventHub:
    """Hands out subscriptions on one event store."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def subscription(
        self,
        name: str,
        checkpoints: CheckpointStore,
        *,
        types: Iterable[str] | None = None,
        batch_size: int = 500,
    ) -> Subscription:
        """A subscription named `name` whose checkpoint lives in `checkpoints`."""
        if not _NAME.match(name):
            raise ConfigError(f"subscription name {name!r} must match {_NAME.pattern}")
        if batch_size < 1:
            raise ConfigError("batch size must be positive")
        return Subscription(self.store, checkpoints, name, TypeFilter(types), batch_size)
