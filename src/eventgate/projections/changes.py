"""The in-process "record changed" feed the upsert service publishes after each commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ALL_ROWS", "ChangeFeed", "RecordChanged"]

ALL_ROWS = "*"
"""The id of a change that touches every row of a view (a reset, a rebuild, a missed notice)."""


@dataclass(frozen=True)
class RecordChanged:
    """Row `id` of read model `view` now reflects the log up to `position`."""

    view: str
    id: str
    position: int


Listener = Callable[[RecordChanged], None]


class ChangeFeed:
    """Fan-out of committed read-model changes, and the positions each view has reached."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._positions: dict[str, int] = {}
        self._advanced = asyncio.Condition()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every change from now on; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def position(self, view: str) -> int:
        """The position `view` is known to have reached in this process."""
        return self._positions.get(view, 0)

    async def publish(self, view: str, position: int, changes: Iterable[RecordChanged]) -> None:
        """Announce committed `changes`, and that `view` has reached `position`."""
        if self._listeners:
            for change in changes:
                for listener in list(self._listeners):  # one may stop itself while called
                    listener(change)
        self._positions[view] = max(position, self.position(view))
        async with self._advanced:
            self._advanced.notify_all()

    async def wait_for(self, view: str, position: int) -> None:
        """Wait until `view` reaches `position` (bound it with `asyncio.timeout`)."""
        async with self._advanced:
            await self._advanced.wait_for(lambda: self.position(view) >= position)
