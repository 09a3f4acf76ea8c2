"""A read-through cache of query results, emptied by the upsert service's change feed.

Correct only where every change to the read store is announced on this process's
`ChangeFeed`, which holds when the upsert service runs in the same process (`eventgate
up`). A result is kept only if no change to its view was announced while it was being
read, so a read racing an upsert can never pin a stale row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from cachetools import LRUCache

from eventgate.projections.changes import ChangeFeed, RecordChanged

__all__ = ["ALL_ROWS", "ViewCache"]

ALL_ROWS = "*"
"""The id of a change that touches every row of a view (a reset or rebuild)."""


class ViewCache:
    """Per-view LRU caches; a change to a row evicts it, a change to a view with
    `per_row=False` (a list whose pages any row can alter) evicts the whole view."""

    def __init__(self, feed: ChangeFeed, views: Mapping[str, bool], size: int = 10_000) -> None:
        self._per_row = views
        self._entries: dict[str, LRUCache[Hashable, Any]] = {v: LRUCache(size) for v in views}
        self._generations = dict.fromkeys(views, 0)
        feed.listen(self._changed)

    async def get(self, view: str, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        entries = self._entries[view]
        if key in entries:
            return entries[key]
        generation = self._generations[view]
        value = await load()
        if self._generations[view] == generation:
            entries[key] = value
        return value

    def _changed(self, change: RecordChanged) -> None:
        if change.view not in self._entries:
            return
        self._generations[change.view] += 1
        entries = self._entries[change.view]
        if self._per_row[change.view] and change.id != ALL_ROWS:
            entries.pop(change.id, None)
        else:
            entries.clear()
