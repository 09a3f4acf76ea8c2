"""The query API: an ASGI app that answers GET, HEAD and OPTIONS from the read store only."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventgate.http.consistency import decode_token
from eventgate.http.etags import ETagCipher, content_etag
from eventgate.http.media import JSON, response_type
from eventgate.http.problems import HTTPProblem, render_error
from eventgate.http.representation import choose_format, render
from eventgate.projections.changes import ChangeFeed
from eventgate.queries.reader import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY, InventoryReader

__all__ = ["query_app"]

READ_METHODS = ["GET", "HEAD", "OPTIONS"]


class InventoryQueries:
    """The endpoints; `allow` lists every method of each resource, for OPTIONS."""

    def __init__(
        self,
        reader: InventoryReader,
        feed: ChangeFeed,
        cipher: ETagCipher,
        consistency_wait: float,
        allow: Mapping[str, Sequence[str]],
    ) -> None:
        self._reader = reader
        self._feed = feed
        self._cipher = cipher
        self._wait = consistency_wait
        self._allow = allow

    async def collection(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("collection")
        fmt = choose_format(request)
        limit = _limit(request.query_params.get("limit"))
        q = request.query_params.get("q")
        if q is not None and len(q) > MAX_QUERY:
            raise HTTPProblem(400, f"q must be at most {MAX_QUERY} characters")
        consistency = await self._consistency(request, self._reader.list_view)
        page = await self._reader.items(limit, request.query_params.get("cursor"), q)
        body = {"items": page.items, "next": page.next}
        return render(
            request, fmt, "InventoryItemListDataCollection", body, content_etag, consistency
        )

    async def item(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return self._options("item")
        fmt = choose_format(request)
        item_id = request.path_params["id"]
        consistency = await self._consistency(request, self._reader.details_view)
        row = await self._reader.item(item_id)
        if row is None:
            raise HTTPProblem(404, f"no inventory item {item_id}")
        if not row["active"]:
            raise HTTPProblem(410, f"inventory item {item_id} is deactivated")
        body = {
            "id": row["id"],
            "name": row["name"],
            "currentCount": row["current_count"],
            "version": row["version"],
        }
        version = row["version"]
        return render(
            request,
            fmt,
            "InventoryItemDetails",
            body,
            lambda _: self._cipher.seal(item_id, version, fmt),
            consistency,
        )

    def _options(self, resource: str) -> Response:
        methods = list(self._allow[resource])
        return Response(
            orjson.dumps(methods),
            headers={"Allow": ", ".join(methods)},
            media_type=response_type(JSON, "String[]"),
        )

    async def _consistency(self, request: Request, view: str) -> dict[str, str]:
        """With a Consistency-Token, wait (bounded) until `view` has reached it."""
        token = request.headers.get("consistency-token")
        if token is None:
            return {}
        position = decode_token(token)
        try:
            async with asyncio.timeout(self._wait):
                await self._feed.wait_for(view, position)
        except TimeoutError:
            return {"Consistency-Status": "stale"}
        return {"Consistency-Status": "current"}


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise HTTPProblem(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def query_app(
    reader: InventoryReader,
    feed: ChangeFeed,
    cipher: ETagCipher,
    *,
    paths: Mapping[str, Sequence[str]],
    allow: Mapping[str, Sequence[str]],
    consistency_wait: float = 2.0,
) -> Starlette:
    """The query ASGI app; `paths` maps "collection"/"item" to their URL patterns."""
    queries = InventoryQueries(reader, feed, cipher, consistency_wait, allow)
    routes = [
        Route(path, endpoint, methods=READ_METHODS)
        for resource, endpoint in (("collection", queries.collection), ("item", queries.item))
        for path in paths[resource]
    ]
    return Starlette(
        routes=routes, exception_handlers={HTTPProblem: render_error, HTTPException: render_error}
    )
