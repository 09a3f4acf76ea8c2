"""The OpenAPI 3.1 document of an app's resources, generated from their declarations.

Request bodies come from the command types (msgspec's JSON Schema, in the body's camelCase
spelling, with the framework's bounds), representations from the read models' columns,
and every failure is an RFC 9457 problem. Declaring a resource documents it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec

from eventgate.domain.messages import Command, camel_case
from eventgate.projections.projection import Projection
from eventgate.queries.reader import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY
from eventgate.resources.bodies import (
    MAX_SAFE_INTEGER,
    MAX_TEXT,
    XML_TEXT_PATTERN,
    numeric_string_pattern,
    reads_body,
)
from eventgate.resources.declaration import ListView, Resource

__all__ = ["PROBLEM_SCHEMA", "openapi_document"]

_SCHEMAS = "#/components/schemas/"
_JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


def openapi_document(
    name: str, resources: Sequence[Resource], *, secured: bool = False
) -> dict[str, Any]:
    """OpenAPI 3.1 of the canonical paths of `resources` (aliases are left out)."""
    commands = list(dict.fromkeys(c for r in resources for c in r.commands()))
    schemas = _command_schemas(commands)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["CommandAccepted"] = _ACCEPTED
    paths: dict[str, Any] = {}
    for resource in resources:
        if resource.list is not None:
            schemas[resource.list.domain_model] = _list_schema(resource.list)
        schemas[resource.item.domain_model] = _row_schema(resource.item.projection,
                                                          resource.item.fields)  # fmt: skip
        paths[resource.path] = _collection(resource)
        paths[resource.item_paths[0]] = _item(resource)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": f"eventgate {name}", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }
        document["security"] = [{"apiKey": []}, {"bearer": []}]
    return document


def _command_schemas(commands: Sequence[type[Command]]) -> dict[str, Any]:
    """One schema per command (and per nested type), as its body is spelled: no `id` but a
    creating command's optional client UUID, camelCase property names."""
    _, components = msgspec.json.schema_components(commands, ref_template=_SCHEMAS + "{name}")
    for schema in components.values():
        _camel_properties(schema)
        _bound_integers(schema)
    for command in commands:
        schema = components[command.__name__]
        schema.pop("title", None)
        schema["properties"].pop("id", None)
        schema["required"] = [r for r in schema.get("required", []) if r != "id"]
        if command.creates:
            schema["properties"]["id"] = {"type": "string", "format": "uuid"}
        if not schema["required"]:
            del schema["required"]
    return components


def _camel_properties(schema: dict[str, Any]) -> None:
    if "properties" in schema:
        schema["properties"] = {camel_case(k): v for k, v in schema["properties"].items()}
    if "required" in schema:
        schema["required"] = [camel_case(r) for r in schema["required"]]


def _bound_integers(schema: Any) -> None:
    """The framework's bounds, documented: integers within the I-JSON range unless declared
    narrower (and, where `numeric_string_pattern` has a form for the bounds, accepted as
    numeric strings too); text XML 1.0 can carry, at most MAX_TEXT characters by default."""
    if isinstance(schema, list):
        for item in schema:
            _bound_integers(item)
    if not isinstance(schema, dict):
        return
    for value in schema.values():
        _bound_integers(value)
    if schema.get("type") == "integer":
        if "minimum" not in schema and "exclusiveMinimum" not in schema:
            schema["minimum"] = -MAX_SAFE_INTEGER
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            schema["maximum"] = MAX_SAFE_INTEGER
    if schema.get("type") == "string" and not {"pattern", "format", "enum"} & set(schema):
        schema["pattern"] = XML_TEXT_PATTERN
        schema.setdefault("maxLength", MAX_TEXT)
    for name, value in schema.get("properties", {}).items():
        if isinstance(value, dict) and value.get("type") == "integer":
            numeric = numeric_string_pattern(*_integer_range(value))
            if numeric is not None:
                text = {"type": "string", "pattern": numeric}
                schema["properties"][name] = {"anyOf": [value, text]}


def _integer_range(schema: dict[str, Any]) -> tuple[int, int]:
    lower = schema.get("minimum", schema.get("exclusiveMinimum", -MAX_SAFE_INTEGER - 1) + 1)
    upper = schema.get("maximum", schema.get("exclusiveMaximum", MAX_SAFE_INTEGER + 1) - 1)
    return math.ceil(lower), math.floor(upper)


def _row_schema(projection: Projection, fields: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {camel_case(f): _column_schema(projection, f) for f in fields},
        "required": [camel_case(f) for f in fields],
    }


def _column_schema(projection: Projection, column: str) -> dict[str, Any]:
    kind = _JSON_TYPES[projection.columns[column]]
    nullable = column in projection.nullable
    return {"type": [kind, "null"] if nullable else kind, "readOnly": True}


def _list_schema(view: ListView) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _row_schema(view.projection, view.fields)},
            "next": {"type": ["string", "null"], "description": "cursor of the next page"},
        },
        "required": ["items", "next"],
    }


def _collection(resource: Resource) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    if resource.list is not None:
        operations["get"] = {
            "summary": f"{resource.list.domain_model}: {resource.name}, a page at a time",
            "parameters": _list_parameters(resource.list),
            "responses": _reads(resource.list.domain_model),
        }
    if resource.create is not None:
        operations["post"] = {
            "summary": resource.create.__name__,
            "requestBody": _body([resource.create]),
            "responses": _accepted(),
        }
    return operations


def _item(resource: Resource) -> dict[str, Any]:
    item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    operations: dict[str, Any] = {
        "parameters": [item_id],
        "get": {
            "summary": f"{resource.item.domain_model}: one of {resource.name}",
            "responses": {
                **_reads(resource.item.domain_model),
                "404": _problem("no such item"),
                "410": _problem("the item is logically deleted"),
                "503": _problem("the read model has parked this item's first events"),
            },
        },
    }
    if_match = {"name": "If-Match", "in": "header", "required": False,
                "schema": {"type": "string"}}  # fmt: skip
    for method, commands in resource.item_commands().items():
        operation: dict[str, Any] = {
            "summary": " or ".join(c.__name__ for c in commands),
            "parameters": [if_match],
            "responses": {
                **_accepted(),
                "404": _problem("no such item"),
                "412": _problem("If-Match names no current version"),
            },
        }
        if reads_body(commands):
            operation["requestBody"] = _body(commands)
        operations[method.lower()] = operation
    return operations


def _body(commands: Sequence[type[Command]]) -> dict[str, Any]:
    """One JSON body per command; several share a method by their domain-model."""
    if len(commands) == 1:
        media = {"application/json": {"schema": {"$ref": _SCHEMAS + commands[0].__name__}}}
    else:
        media = {
            f"application/json; domain-model={c.__name__}": {
                "schema": {"$ref": _SCHEMAS + c.__name__}
            }
            for c in commands
        }
    return {"required": True, "content": media}


def _list_parameters(view: ListView) -> list[dict[str, Any]]:
    limit = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
    parameters = [
        {"name": "limit", "in": "query", "schema": limit},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    if view.search is not None:
        q = {"type": "string", "maxLength": MAX_QUERY}
        parameters.append({"name": "q", "in": "query", "schema": q,
                           "description": f"text within {camel_case(view.search)}"})  # fmt: skip
    for column in view.filters:
        kind = _JSON_TYPES[view.projection.columns[column]]
        schema: dict[str, Any] = {"type": kind}
        if kind == "integer":
            schema.update(minimum=-MAX_SAFE_INTEGER, maximum=MAX_SAFE_INTEGER)
        parameters.append({"name": camel_case(column), "in": "query", "schema": schema})
    return parameters


def _reads(model: str) -> dict[str, Any]:
    schema = {"$ref": _SCHEMAS + model}
    return {
        "200": {
            "description": f"{model}, as JSON or XML by Accept",
            "content": {"application/json": {"schema": schema}, "application/xml": {}},
        },
        "304": {"description": "not modified (If-None-Match)"},
        "400": _problem("malformed query or Consistency-Token"),
        "406": _problem("no acceptable representation"),
    }


def _accepted() -> dict[str, Any]:
    return {
        "200": {
            "description": "applied: with Prefer: wait=N, every read model has applied it",
            "content": {"application/json": {"schema": {"$ref": _SCHEMAS + "CommandAccepted"}}},
        },
        "202": {
            "description": "accepted: the events are durably stored (Link: its status)",
            "content": {"application/json": {"schema": {"$ref": _SCHEMAS + "CommandAccepted"}}},
        },
        "400": _problem("malformed body"),
        "409": _problem("conflict with the current state"),
        "415": _problem("unsupported media type or domain-model"),
        "422": _problem("invalid values"),
    }


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": _SCHEMAS + "Problem"}}},
    }


PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
_ACCEPTED = {
    "type": "object",
    "properties": {
        "commandId": {"type": "string"},
        "id": {"type": "string"},
        "consistencyToken": {"type": "string"},
        "status": {"enum": ["accepted", "applied"]},
        "links": {
            "type": "object",
            "properties": {"status": {"type": "string"}, "resource": {"type": "string"}},
        },
    },
    "required": ["commandId", "id", "consistencyToken", "status"],
}
