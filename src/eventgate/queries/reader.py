"""The read facade of the inventory: queries on the read store, never a write."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import orjson

from eventgate.http.problems import HTTPProblem
from eventgate.projections.inventory import item_details, item_list
from eventgate.projections.projection import Row
from eventgate.projections.readstore import SQLiteReadStore
from eventgate.queries.cache import ViewCache

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_QUERY", "InventoryReader", "ItemPage"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY = 200


@dataclass(frozen=True)
class ItemPage:
    items: list[dict[str, str]]
    next: str | None


def _cursor(row: Row) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([row["name"], row["id"]])).decode()


def _after(cursor: str) -> tuple[str, str]:
    try:
        name, item_id = orjson.loads(base64.urlsafe_b64decode(cursor))
        if not isinstance(name, str) or not isinstance(item_id, str):
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError):
        raise HTTPProblem(400, "malformed cursor") from None
    return name, item_id


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class InventoryReader:
    """Answers the two inventory queries from their read models."""

    list_view = item_list.name
    details_view = item_details.name
    cached_views: ClassVar[Mapping[str, bool]] = MappingProxyType(
        {list_view: False, details_view: True}  # view -> is one row's change local to it?
    )

    def __init__(self, read_store: SQLiteReadStore, cache: ViewCache | None = None) -> None:
        self._store = read_store
        self._cache = cache

    async def items(self, limit: int, cursor: str | None, q: str | None) -> ItemPage:
        """Active items ordered by name then id, `limit` per page, optionally matching `q`."""
        if self._cache is None:
            return await self._items(limit, cursor, q)
        page: ItemPage = await self._cache.get(
            self.list_view, (limit, cursor, q), lambda: self._items(limit, cursor, q)
        )
        return page

    async def item(self, item_id: str) -> Row | None:
        """The details row of one item (deactivated ones too), or None."""
        if self._cache is None:
            return await self._store.get(item_details, item_id)
        row: Row | None = await self._cache.get(
            self.details_view, item_id, lambda: self._store.get(item_details, item_id)
        )
        return row

    async def _items(self, limit: int, cursor: str | None, q: str | None) -> ItemPage:
        where: list[str] = ["active = 1"]
        parameters: list[str] = []
        if cursor is not None:
            where.append("(name, id) > (?, ?)")
            parameters += _after(cursor)
        if q:
            where.append("name LIKE ? ESCAPE '\\'")
            parameters.append(_like(q))
        rows = await self._store.select(
            item_list, " AND ".join(where), tuple(parameters), "name, id", limit + 1
        )
        page = [{"id": row["id"], "name": row["name"]} for row in rows[:limit]]
        return ItemPage(page, _cursor(rows[limit - 1]) if len(rows) > limit else None)
