"""The read facade of the inventory: queries on the read store, never a write."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from eventgate.http.problems import HTTPProblem
from eventgate.projections.inventory import item_details, item_list
from eventgate.projections.projection import Row
from eventgate.projections.readstore import SQLiteReadStore

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

    def __init__(self, read_store: SQLiteReadStore) -> None:
        self._store = read_store

    async def items(self, limit: int, cursor: str | None, q: str | None) -> ItemPage:
        """Active items ordered by name then id, `limit` per page, optionally matching `q`."""
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

    async def item(self, item_id: str) -> Row | None:
        """The details row of one item (deactivated ones too), or None."""
        return await self._store.get(item_details, item_id)
