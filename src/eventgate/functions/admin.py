"""The admin API: functions, their dead letters, webhook subscriptions and the read models
over HTTP (behind the gateway, scope admin)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventgate.errors import EventgateError
from eventgate.eventstore.protocol import EventStore
from eventgate.functions.state import FunctionStore
from eventgate.gateway.routes import GatewayRoute
from eventgate.http.problems import HTTPProblem, render_error
from eventgate.projections.admin import ProjectionAdmin
from eventgate.webhooks.admin import WebhookAdmin
from eventgate.webhooks.store import WebhookStore

__all__ = ["ENDPOINTS", "admin_app", "admin_routes", "function_rows"]

ENDPOINTS = (  # (method, path, AdminAPI handler): the app and the gateway both read this
    ("GET", "/admin/functions", "list_functions"),
    ("GET", "/admin/dead-letters", "list_letters"),
    ("POST", "/admin/dead-letters/replay", "replay_all"),
    ("GET", "/admin/dead-letters/{id}", "show_letter"),
    ("DELETE", "/admin/dead-letters/{id}", "discard"),
    ("POST", "/admin/dead-letters/{id}/replay", "replay_one"),
    ("GET", "/admin/webhooks", "list_webhooks"),  # webhooks/admin.py: WebhookAdmin
    ("POST", "/admin/webhooks", "create_webhook"),
    ("GET", "/admin/webhooks/{id}", "show_webhook"),
    ("PATCH", "/admin/webhooks/{id}", "update_webhook"),
    ("DELETE", "/admin/webhooks/{id}", "delete_webhook"),
    ("GET", "/admin/projections", "list_projections"),  # projections/admin.py
    ("POST", "/admin/projections/{name}/retry", "retry_parked"),
    ("POST", "/admin/projections/{name}/skip", "skip_parked"),
)


def admin_routes(upstream: str = "admin") -> list[GatewayRoute]:
    """The gateway's routes to the admin API; every method needs the `admin` scope."""
    methods: dict[str, set[str]] = {}
    for method, path, _ in ENDPOINTS:
        methods.setdefault(path, set()).add(method)
    return [
        GatewayRoute(frozenset(allowed), path, upstream, scope="admin")
        for path, allowed in methods.items()
    ]


async def function_rows(functions: FunctionStore, store: EventStore) -> list[dict[str, Any]]:
    """Each registered function with its checkpoint, lag behind the log and failure counts."""
    return [
        {
            "name": f.name,
            "triggers": f.triggers,
            "checkpoint": f.checkpoint,
            "lag": await store.count_after(f.checkpoint),
            "invocations": f.invocations,
            "failures": f.failures,
            "dead_letters": f.dead_letters,
        }
        for f in await functions.status()
    ]


class AdminAPI:
    def __init__(self, functions: FunctionStore, store: EventStore) -> None:
        self._functions = functions
        self._store = store

    async def list_functions(self, request: Request) -> Response:
        return _json({"functions": await function_rows(self._functions, self._store)})

    async def list_letters(self, request: Request) -> Response:
        letters = await self._functions.dead_letters(request.query_params.get("function"))
        return _json({"dead_letters": [letter.to_json() for letter in letters]})

    async def show_letter(self, request: Request) -> Response:
        letter = await self._functions.dead_letter_by_id(_letter_id(request))
        return _json(letter.to_json())

    async def replay_one(self, request: Request) -> Response:
        count = await self._functions.request_replay(letter_id=_letter_id(request))
        return _json({"replaying": count}, 202)

    async def replay_all(self, request: Request) -> Response:
        function = request.query_params.get("function")
        return _json({"replaying": await self._functions.request_replay(function=function)}, 202)

    async def discard(self, request: Request) -> Response:
        await self._functions.discard(_letter_id(request))
        return Response(status_code=204)


def _letter_id(request: Request) -> int:
    raw = request.path_params["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise HTTPProblem(404, f"no dead letter {raw[:40]}")
    return int(raw)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def admin_app(
    functions: FunctionStore,
    store: EventStore,
    webhooks: WebhookStore,
    *,
    private_targets: bool = False,
    projections: ProjectionAdmin | None = None,
) -> Starlette:
    """`private_targets`: webhook subscriptions may target private and loopback addresses;
    without `projections`, the /admin/projections routes are left out."""
    parts = [AdminAPI(functions, store), WebhookAdmin(webhooks, store, functions, private_targets)]
    parts += [projections] if projections is not None else []
    routes = [
        Route(path, getattr(part, handler), methods=[method])
        for method, path, handler in ENDPOINTS
        for part in parts
        if hasattr(part, handler)
    ]
    handlers = {
        HTTPProblem: render_error,
        HTTPException: render_error,
        EventgateError: render_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers)
