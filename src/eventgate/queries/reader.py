"""The read facade of declared resources: their list and item queries, never a write."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from eventgate.domain.messages import camel_case
from eventgate.http.problems import HTTPProblem
from eventgate.projections.projection import Row
from eventgate.projections.protocol import ReadStore
from eventgate.queries.cache import ViewCache
from eventgate.resources.declaration import ItemView, ListView

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_QUERY", "Page", "ResourceReader", "representation"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY = 200


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next: str | None


def representation(row: Row, fields: Sequence[str]) -> dict[str, Any]:
    """The client's view of a row: the declared fields, camelCase."""
    return {camel_case(name): row[name] for name in fields}


class ResourceReader:
    """Answers list and item queries from the read store, through the cache when given."""

    def __init__(self, read_store: ReadStore, cache: ViewCache | None = None) -> None:
        self._store = read_store
        self._cache = cache

    def parked(self, view: ItemView | ListView) -> frozenset[str]:
        """The streams whose events the view's read model has parked (it is behind on them)."""
        return self._store.parked(view.projection.name)

    async def item(self, view: ItemView, item_id: str) -> Row | None:
        """The row of one item (logically deleted ones too), or None."""
        projection = view.projection
        if self._cache is None:
            return await self._store.get(projection, item_id)
        row: Row | None = await self._cache.row(
            projection.name, item_id, lambda: self._store.get(projection, item_id)
        )
        return row

    async def page(
        self,
        view: ListView,
        limit: int,
        cursor: str | None,
        q: str | None,
        filters: Mapping[str, Any],
    ) -> Page:
        """Rows in the view's order after `cursor`, `limit` of them, matching `q` and `filters`."""
        if self._cache is None:
            return await self._page(view, limit, cursor, q, filters)
        key = (id(view), limit, cursor, q, tuple(sorted(filters.items())))
        page: Page = await self._cache.query(
            view.projection.name, key, lambda: self._page(view, limit, cursor, q, filters)
        )
        return page

    async def _page(
        self,
        view: ListView,
        limit: int,
        cursor: str | None,
        q: str | None,
        filters: Mapping[str, Any],
    ) -> Page:
        order = view.sort_columns
        where: list[str] = []
        parameters: list[Any] = []
        for column, value in {**view.where, **filters}.items():
            where.append(f"{column} = ?")
            parameters.append(value)
        if cursor is not None:
            where.append(f"({', '.join(order)}) > ({', '.join('?' for _ in order)})")
            parameters += _after(cursor, len(order))
        if q and view.search is not None:
            where.append(f"{view.search} LIKE ? ESCAPE '\\'")
            parameters.append(_like(q))
        rows = await self._store.select(
            view.projection,
            " AND ".join(where) or "1 = 1",
            tuple(parameters),
            ", ".join(order),
            limit + 1,
        )
        items = [representation(row, view.fields) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, _cursor([rows[limit - 1][c] for c in order]) if more else None)


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode()


def _after(cursor: str, size: int) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor))
        if not isinstance(values, list) or len(values) != size:
            raise ValueError(cursor)
        if not all(isinstance(v, str | int | float) for v in values):
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError):
        raise HTTPProblem(400, "malformed cursor") from None
    return values


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
