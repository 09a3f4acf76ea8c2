"""The inventory's HTTP surface: URL paths, the gateway's route table and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventgate.gateway.routes import SAFE_METHODS, GatewayRoute, RouteTable
from eventgate.queries.reader import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY

__all__ = ["PATHS", "allowed_methods", "inventory_openapi", "inventory_routes"]

PATHS: Mapping[str, Sequence[str]] = {
    "collection": ("/api/inventory-items", "/api/InventoryItem"),  # canonical, then reference 004's
    "item": ("/api/inventory-items/{id}", "/api/InventoryItem/{id}"),
}


def inventory_routes() -> RouteTable:
    routes = []
    for path in PATHS["collection"]:
        routes += [
            GatewayRoute(SAFE_METHODS, path, "queries"),
            GatewayRoute(frozenset({"POST"}), path, "commands"),
        ]
    for path in PATHS["item"]:
        routes += [
            GatewayRoute(SAFE_METHODS, path, "queries"),
            GatewayRoute(frozenset({"POST", "PUT", "DELETE"}), path, "commands"),
        ]
    return RouteTable(routes)


def allowed_methods(table: RouteTable) -> dict[str, list[str]]:
    """Every method of each resource, as OPTIONS and 405 answers list them."""
    return {
        resource: table.match("OPTIONS", paths[0].replace("{id}", "x"))[1]
        for resource, paths in PATHS.items()
    }


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"type": "object"}}},
    }


def _json_body(schema: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    media = "application/json" + (f"; domain-model={model}" if model else "")
    return {"required": True, "content": {media: {"schema": schema}}}


def inventory_openapi() -> dict[str, Any]:
    """OpenAPI 3.1 of the canonical inventory paths."""
    item_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    if_match = {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"}}
    accepted = {
        "202": {"description": "accepted: the events are durably stored"},
        "400": _problem("malformed request"),
        "404": _problem("unknown item"),
        "409": _problem("conflict with the item's state"),
        "412": _problem("If-Match is stale"),
        "415": _problem("unsupported media type or domain-model"),
        "422": _problem("invalid values"),
    }
    name = {"type": "string", "minLength": 1, "maxLength": 200}
    count = {
        "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+$"}]
    }
    reads = {
        "200": {"description": "the representation (JSON or XML by Accept)"},
        "304": {"description": "not modified"},
        "400": _problem("malformed query or Consistency-Token"),
        "406": _problem("no acceptable representation"),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventgate inventory", "version": "1"},
        "paths": {
            "/api/inventory-items": {
                "get": {
                    "summary": "GetInventoryItems: active items by name",
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {
                            "type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                            "default": DEFAULT_LIMIT}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                        {"name": "q", "in": "query", "schema": {
                            "type": "string", "maxLength": MAX_QUERY}},
                    ],
                    "responses": reads,
                },
                "post": {
                    "summary": "CreateInventoryItem",
                    "requestBody": _json_body({
                        "type": "object", "required": ["name"],
                        "properties": {"name": name, "id": {"type": "string", "format": "uuid"}},
                    }),
                    "responses": accepted,
                },
            },
            "/api/inventory-items/{id}": {
                "parameters": [item_id],
                "get": {
                    "summary": "GetInventoryItemDetails",
                    "responses": {**reads, "404": _problem("unknown"), "410": _problem("gone")},
                },
                "put": {
                    "summary": "RenameInventoryItem",
                    "parameters": [if_match],
                    "requestBody": _json_body({
                        "type": "object", "required": ["newName"],
                        "properties": {"newName": name},
                    }),
                    "responses": accepted,
                },
                "delete": {
                    "summary": "DeactivateInventoryItem",
                    "parameters": [if_match],
                    "responses": accepted,
                },
                "post": {
                    "summary": "CheckInItemsToInventory or RemoveItemsFromInventory",
                    "parameters": [if_match],
                    "requestBody": _json_body({
                        "type": "object", "required": ["count"], "properties": {"count": count},
                    }, "CheckInItemsToInventory"),
                    "responses": accepted,
                },
            },
        },
    }  # fmt: skip
