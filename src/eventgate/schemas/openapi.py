"""The schema registry's paths in the OpenAPI document (resources/openapi.py makes the rest)."""

from __future__ import annotations

from typing import Any

from eventgate.schemas.registry import SCHEMA_JSON, SCHEMA_PATHS

__all__ = ["registry_paths"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_TYPE = {"name": "type", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "an event type name"}  # fmt: skip
_VERSION = {"name": "version", "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1},
            "description": "a schema version"}  # fmt: skip
_VERSIONS = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "href": {"type": "string"},
        "currentVersion": {"type": "integer"},
        "versions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"version": {"type": "integer"}, "href": {"type": "string"}},
                "required": ["version", "href"],
            },
        },
    },
    "required": ["type", "href", "currentVersion", "versions"],
}


def registry_paths() -> dict[str, Any]:
    """The OpenAPI path items of `GET /api/schemas`, `/{type}` and `/{type}/{version}`."""
    index, of_type, version = SCHEMA_PATHS
    listing = {"type": "object", "properties": {"types": {"type": "array", "items": _VERSIONS}},
               "required": ["types"]}  # fmt: skip
    return {
        index: {"get": _get("every event type and its schema versions", listing, [], "")},
        of_type: {"get": _get("one event type's schema versions", _VERSIONS, [_TYPE],
                              "no such event type")},
        version: {"get": _get("the JSON Schema (draft 2020-12) of one version's data",
                              {"type": "object"}, [_TYPE, _VERSION], "no such type or version",
                              SCHEMA_JSON)},
    }  # fmt: skip


def _get(
    summary: str, schema: dict[str, Any], parameters: list[dict[str, Any]], missing: str,
    media_type: str = "application/json",
) -> dict[str, Any]:  # fmt: skip
    responses: dict[str, Any] = {
        "200": {"description": summary, "content": {media_type: {"schema": schema}}},
        "304": {"description": "not modified (If-None-Match)"},
    }
    if missing:
        problem = {"application/problem+json": {"schema": _PROBLEM}}
        responses["404"] = {"description": missing, "content": problem}
    return {"summary": summary, "tags": ["event schemas"], "parameters": parameters,
            "responses": responses}  # fmt: skip
