"""The gateway's route table and each path's allowed methods, generated from resources."""

from __future__ import annotations

from collections.abc import Sequence

from eventgate.commands.status import COMMANDS_PATH
from eventgate.gateway.routes import SAFE_METHODS, GatewayRoute, RouteTable
from eventgate.resources.declaration import Resource
from eventgate.schemas.registry import SCHEMA_PATHS
from eventgate.streaming.sse import EVENTS_PATH
from eventgate.streaming.websocket import EVENTS_SOCKET_PATH

__all__ = ["allowed_methods", "resource_routes"]


def resource_routes(
    resources: Sequence[Resource], commands: str = "commands", queries: str = "queries"
) -> list[GatewayRoute]:
    """Reads go to the `queries` upstream, writes to `commands`, for every path of each;
    the event streams (all events, and each item's), the schema registry and the command
    status resource to `queries`."""
    routes = [GatewayRoute(STREAM_METHODS, EVENTS_PATH, queries, stream=True)]
    routes.append(GatewayRoute(frozenset({"GET"}), EVENTS_SOCKET_PATH, queries, stream=True,
                               websocket=True))  # fmt: skip
    routes += [GatewayRoute(STREAM_METHODS, p, queries) for p in SCHEMA_PATHS]
    routes.append(GatewayRoute(STREAM_METHODS, f"{COMMANDS_PATH}/{{id}}", queries))
    for resource in resources:
        reads = SAFE_METHODS if resource.list is not None else frozenset({"OPTIONS"})
        for path in resource.collection_paths:
            routes.append(GatewayRoute(reads, path, queries))
            if resource.create is not None:
                routes.append(GatewayRoute(frozenset({"POST"}), path, commands))
        writes = frozenset(resource.item_commands())
        for path in resource.item_paths:
            routes.append(GatewayRoute(SAFE_METHODS, path, queries))
            routes.append(GatewayRoute(STREAM_METHODS, f"{path}/events", queries, stream=True))
            if writes:
                routes.append(GatewayRoute(writes, path, commands))
    return routes


STREAM_METHODS = frozenset({"GET", "HEAD"})


def allowed_methods(
    resources: Sequence[Resource], table: RouteTable
) -> dict[str, dict[str, list[str]]]:
    """resource path -> {"collection": methods, "item": methods}, as OPTIONS and 405 say."""
    return {
        resource.path: {
            "collection": table.allowed(resource.path),
            "item": table.allowed(resource.item_paths[0].replace("{id}", "x")),
        }
        for resource in resources
    }
