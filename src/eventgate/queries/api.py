"""The query API: an ASGI app that answers GET, HEAD and OPTIONS from the read store only."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from eventgate.commands.status import COMMANDS_PATH, CommandStatuses
from eventgate.domain.messages import camel_case
from eventgate.http.consistency import decode_token
from eventgate.http.etags import ETagCipher, content_etag
from eventgate.http.media import JSON, response_type
from eventgate.http.problems import HTTPProblem
from eventgate.http.representation import Rendered, choose_format, represent
from eventgate.http.router import Endpoint, Router, header
from eventgate.projections.changes import ChangeFeed
from eventgate.queries.reader import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_QUERY,
    ResourceReader,
    representation,
)
from eventgate.resources.bodies import MAX_SAFE_INTEGER
from eventgate.resources.declaration import ListView, Resource
from eventgate.schemas.registry import SCHEMA_PATHS, SchemaRegistry
from eventgate.streaming.sse import EVENTS_PATH, EventStream
from eventgate.streaming.websocket import EVENTS_SOCKET_PATH, EventSocket

__all__ = ["query_app"]

READ_METHODS = ["GET", "HEAD", "OPTIONS"]
STREAM_METHODS = ["GET", "HEAD"]
STALE = {"Consistency-Status": "stale"}
PARKED_RETRY_AFTER = "60"
"""Retry-After of a 503 for an item whose first events are parked: an operator must act."""


class ResourceQueries:
    """The read endpoints of one resource; `allow` lists every method of its collection and
    item paths, for OPTIONS."""

    def __init__(
        self,
        resource: Resource,
        reader: ResourceReader,
        feed: ChangeFeed,
        cipher: ETagCipher,
        consistency_wait: float,
        allow: Mapping[str, Sequence[str]],
    ) -> None:
        self._resource = resource
        self._reader = reader
        self._feed = feed
        self._cipher = cipher
        self._wait = consistency_wait
        self._allow = allow
        self._rendered = Rendered()

    async def collection(self, request: Request) -> ASGIApp:
        view = self._resource.list
        if request.method == "OPTIONS" or view is None:
            return self._options("collection")
        fmt = choose_format(request)
        limit = _limit(request.query_params.get("limit"))
        q = request.query_params.get("q")
        if q is not None and len(q) > MAX_QUERY:
            raise HTTPProblem(400, f"q must be at most {MAX_QUERY} characters")
        filters = _filters(view, request.query_params)
        consistency = await self._consistency(request, view.projection.name)
        if consistency and self._reader.parked(view):
            consistency = STALE  # caught up, but for the streams it has parked
        cursor = request.query_params.get("cursor") or None  # empty: the first page
        page = await self._reader.page(view, limit, cursor, q, filters)
        rendered = self._rendered.get(
            page,
            fmt,
            lambda: represent(
                fmt, view.domain_model, {"items": page.items, "next": page.next}, content_etag
            ),
        )
        return rendered.answer(request, consistency)

    async def item(self, request: Request) -> ASGIApp:
        if request.method == "OPTIONS":
            return self._options("item")
        view = self._resource.item
        fmt = choose_format(request)
        item_id = request.path_params["id"]
        consistency = await self._consistency(request, view.projection.name)
        row = await self._reader.item(view, item_id)
        parked = item_id in self._reader.parked(view)
        if parked:
            consistency = STALE
        if row is None and parked:
            raise HTTPProblem(
                503,
                f"{view.projection.name} cannot apply an event of {request.url.path} yet (parked:"
                " see `eventgate projections status`)",
                headers={"Retry-After": PARKED_RETRY_AFTER, **consistency},
            )
        if row is None:
            raise HTTPProblem(404, f"nothing at {request.url.path}", headers=consistency)
        if view.gone and all(row[c] == v for c, v in view.gone.items()):
            detail = f"{request.url.path} is gone (logically deleted)"
            raise HTTPProblem(410, detail, headers=consistency)
        version = row[view.version]
        rendered = self._rendered.get(
            row,
            fmt,
            lambda: represent(
                fmt,
                view.domain_model,
                representation(row, view.fields),
                lambda _: self._cipher.seal(item_id, version, fmt),
            ),
        )
        return rendered.answer(request, consistency)

    def _options(self, kind: str) -> Response:
        methods = list(self._allow[kind])
        return Response(
            orjson.dumps(methods),
            headers={"Allow": ", ".join(methods)},
            media_type=response_type(JSON, "String[]"),
        )

    async def _consistency(self, request: Request, view: str) -> dict[str, str]:
        """With a Consistency-Token, wait (bounded) until `view` has reached it."""
        token = header(request, b"consistency-token")
        if token is None:
            return {}
        position = decode_token(token)
        try:
            async with asyncio.timeout(self._wait):
                await self._feed.wait_for(view, position)
        except TimeoutError:
            return STALE
        return {"Consistency-Status": "current"}


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise HTTPProblem(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _filters(view: ListView, params: Mapping[str, str]) -> dict[str, Any]:
    """The declared filters the query names, as column values (400 when one cannot be)."""
    found: dict[str, Any] = {}
    for column in view.filters:
        raw = params.get(camel_case(column))
        if raw is None:
            continue
        kind = view.projection.columns[column]
        try:
            found[column] = _typed(kind, raw)
        except ValueError:
            raise HTTPProblem(400, f"{camel_case(column)} must be a {kind.__name__}") from None
    return found


def _typed(kind: type, raw: str) -> Any:
    if kind is bool:
        if raw not in ("true", "false"):
            raise ValueError(raw)
        return raw == "true"
    if kind is int:
        if not re.fullmatch(r"-?[0-9]{1,16}", raw) or abs(int(raw)) > MAX_SAFE_INTEGER:
            raise ValueError(raw)
        return int(raw)
    if kind is float:
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(raw)
        return number
    return raw


def query_app(
    resources: Sequence[Resource],
    reader: ResourceReader,
    feed: ChangeFeed,
    cipher: ETagCipher,
    *,
    allow: Mapping[str, Mapping[str, Sequence[str]]],
    consistency_wait: float = 2.0,
    events: EventStream | None = None,
    schemas: SchemaRegistry | None = None,
    statuses: CommandStatuses | None = None,
) -> Router:
    """The query ASGI app of `resources`; `allow[resource.path]` lists the methods of its
    "collection" and "item" paths; with `events`, the event stream routes too; with
    `schemas`, the schema registry's; with `statuses`, the command status resource."""
    routes: list[tuple[str, Sequence[str], Endpoint]] = []
    if statuses is not None:
        routes.append((f"{COMMANDS_PATH}/{{id}}", STREAM_METHODS, statuses.get))
    if schemas is not None:
        endpoints = (schemas.index, schemas.versions, schemas.schema)
        routes += [(p, STREAM_METHODS, e) for p, e in zip(SCHEMA_PATHS, endpoints, strict=True)]
    sockets: dict[str, ASGIApp] = {}
    if events is not None:
        routes.append((EVENTS_PATH, STREAM_METHODS, events.all))
        socket = sockets[EVENTS_SOCKET_PATH] = EventSocket(events)
        routes.append((EVENTS_SOCKET_PATH, STREAM_METHODS, socket.plain))
    for resource in resources:
        queries = ResourceQueries(
            resource, reader, feed, cipher, consistency_wait, allow[resource.path]
        )
        routes += [(p, READ_METHODS, queries.collection) for p in resource.collection_paths]
        routes += [(p, READ_METHODS, queries.item) for p in resource.item_paths]
        if events is not None:
            routes += [(f"{p}/events", STREAM_METHODS, events.of_item) for p in resource.item_paths]
    return Router(routes, sockets)
