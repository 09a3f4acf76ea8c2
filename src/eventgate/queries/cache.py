"""A read-through cache of query results, emptied by the upsert service's change feed.

Correct because every change to the read store is announced on this process's
`ChangeFeed`: by the upsert service when it runs here, and by the read-model watcher
(projections/watcher.py) when another process applied it. A result is kept only if no
change to its view was announced while it was being read, so a read racing an upsert can
never pin a stale row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from cachetools import LRUCache

from eventgate.projections.changes import ALL_ROWS, ChangeFeed, RecordChanged

__all__ = ["ViewCache"]


class ViewCache:
    """Per-view LRU caches of two kinds: rows by key, which a change to that row evicts,
    and query results (pages of a list), which any change to the view evicts."""

    def __init__(self, feed: ChangeFeed, views: Iterable[str], size: int = 10_000) -> None:
        self._rows: dict[str, LRUCache[Hashable, Any]] = {v: LRUCache(size) for v in views}
        self._queries: dict[str, LRUCache[Hashable, Any]] = {v: LRUCache(size) for v in views}
        self._generations = dict.fromkeys(self._rows, 0)
        feed.listen(self._changed)

    async def row(self, view: str, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        """The row `key` of `view`, from the cache or `load`."""
        return await self._get(self._rows[view], view, key, load)

    async def query(self, view: str, key: Hashable, load: Callable[[], Awaitable[Any]]) -> Any:
        """The result of query `key` on `view`, from the cache or `load`."""
        return await self._get(self._queries[view], view, key, load)

    async def _get(
        self,
        entries: LRUCache[Hashable, Any],
        view: str,
        key: Hashable,
        load: Callable[[], Awaitable[Any]],
    ) -> Any:
        if key in entries:
            return entries[key]
        generation = self._generations[view]
        value = await load()
        if self._generations[view] == generation:
            entries[key] = value
        return value

    def _changed(self, change: RecordChanged) -> None:
        if change.view not in self._rows:
            return
        self._generations[change.view] += 1
        self._queries[change.view].clear()
        if change.id == ALL_ROWS:
            self._rows[change.view].clear()
        else:
            self._rows[change.view].pop(change.id, None)
