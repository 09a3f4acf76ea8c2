"""The read models over the admin API (routes in functions/admin.py: ENDPOINTS): each
projection's checkpoint, lag and parked streams, and retry or skip of a parked stream, as
`eventgate projections status|retry|skip` do from a shell."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventgate.eventstore.protocol import EventStore
from eventgate.http.problems import HTTPProblem
from eventgate.projections.parking import RETRY, SKIP
from eventgate.projections.protocol import ReadStore
from eventgate.projections.service import UpsertService

__all__ = ["ProjectionAdmin"]

_MAX_STREAM_ID = 200


class ProjectionAdmin:
    """Reads the read store and the log only; a running upsert service takes a retry or
    skip within a second, as it does the CLI's."""

    def __init__(self, upsert: UpsertService, read_store: ReadStore, store: EventStore) -> None:
        self._upsert = upsert
        self._read_store = read_store
        self._store = store

    async def list_projections(self, request: Request) -> Response:
        """`{"head", "projections": [{name, checkpoint, head, lag, parked: [...]}]}`."""
        head = await self._store.head()
        rows = [status.to_json() for status in await self._upsert.status()]
        return _json({"head": head, "projections": rows})

    async def retry_parked(self, request: Request) -> Response:
        """Apply a parked stream's events again (`?stream=ID`, or every parked stream)."""
        return await self._request(request, RETRY, request.query_params.get("stream"))

    async def skip_parked(self, request: Request) -> Response:
        """Drop a parked stream's failing event and apply the rest (`?stream=ID` needed)."""
        stream = request.query_params.get("stream")
        if not stream:
            raise HTTPProblem(422, "skip needs ?stream= (the parked stream's id)")
        return await self._request(request, SKIP, stream)

    async def _request(self, request: Request, kind: str, stream: str | None) -> Response:
        name = request.path_params["name"]
        if name not in self._read_store.projections:
            raise HTTPProblem(404, f"no projection named {name[:80]!r}")
        if stream is not None and not 0 < len(stream) <= _MAX_STREAM_ID:
            raise HTTPProblem(422, f"stream must be 1 to {_MAX_STREAM_ID} characters")
        count = await self._read_store.request(name, stream, kind)
        if count == 0:
            which = f"stream {stream[:80]!r}" if stream else "streams"
            raise HTTPProblem(404, f"{name} has no parked {which}")
        return _json({"requested": count, "kind": kind}, 202)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")
