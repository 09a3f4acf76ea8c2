"""The schema registry over HTTP: `GET /api/schemas`, `/api/schemas/{type}` and
`/api/schemas/{type}/{version}`, from the event classes (current versions) and the released
file (older ones). Every answer is rendered once, at start, with a content ETag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp

from eventgate.domain.messages import Event
from eventgate.http.etags import content_etag
from eventgate.http.problems import HTTPProblem
from eventgate.http.representation import CACHE_CONTROL, Representation
from eventgate.schemas.generate import Schemas, current_schemas
from eventgate.schemas.released import Released

__all__ = ["SCHEMAS_PATH", "SCHEMA_JSON", "SCHEMA_PATHS", "SchemaRegistry", "known_schemas"]

SCHEMAS_PATH = "/api/schemas"
SCHEMA_PATHS = (SCHEMAS_PATH, SCHEMAS_PATH + "/{type}", SCHEMAS_PATH + "/{type}/{version}")
"""The registry's routes: the index, one type's versions, one version's schema."""
SCHEMA_JSON = "application/schema+json"


def known_schemas(events: Sequence[type[Event]], released: Released | None) -> Schemas:
    """Every version of each current event type: older ones from `released`, the current
    one from its class (which wins over a released copy of the same version)."""
    known: Schemas = {}
    for name, versions in current_schemas(events).items():
        known[name] = {**(released.events.get(name, {}) if released else {}), **versions}
    return known


class SchemaRegistry:
    """The registry's endpoints for one app's events."""

    def __init__(self, events: Sequence[type[Event]], released: Released | None = None) -> None:
        known = known_schemas(events, released)
        current = {cls.type_name: cls.schema_version for cls in events}
        self._index = _json(
            {"types": [_versions(name, current[name], known[name]) for name in sorted(known)]}
        )
        self._types = {
            name: _json(_versions(name, current[name], versions))
            for name, versions in known.items()
        }
        self._schemas = {
            (name, str(version)): _json(schema, SCHEMA_JSON)
            for name, versions in known.items()
            for version, schema in versions.items()
        }

    async def index(self, request: Request) -> ASGIApp:
        return self._index.answer(request)

    async def versions(self, request: Request) -> ASGIApp:
        name = request.path_params["type"]
        found = self._types.get(name)
        if found is None:
            raise HTTPProblem(404, f"no event type {name} (see {SCHEMAS_PATH})")
        return found.answer(request)

    async def schema(self, request: Request) -> ASGIApp:
        name, version = request.path_params["type"], request.path_params["version"]
        found = self._schemas.get((name, version))
        if found is None:
            listed = f"{SCHEMAS_PATH}/{name}" if name in self._types else SCHEMAS_PATH
            raise HTTPProblem(404, f"no schema version {version} of {name} (see {listed})")
        return found.answer(request)


def _versions(name: str, current: int, versions: dict[int, Any]) -> dict[str, Any]:
    return {
        "type": name,
        "href": f"{SCHEMAS_PATH}/{name}",
        "currentVersion": current,
        "versions": [
            {"version": v, "href": f"{SCHEMAS_PATH}/{name}/{v}"} for v in sorted(versions)
        ],
    }


def _json(body: Any, media_type: str = "application/json") -> Representation:
    content = orjson.dumps(body)
    tag = content_etag(content)
    not_modified = ((b"etag", tag.encode()), (b"cache-control", CACHE_CONTROL.encode()))
    ok = (
        *not_modified,
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(content)).encode()),
    )
    return Representation(content, tag, not_modified, ok)
