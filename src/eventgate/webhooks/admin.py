"""Webhook subscriptions over the admin API (routes in functions/admin.py: ENDPOINTS)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventgate.eventstore.protocol import EventStore
from eventgate.functions.state import FunctionStore
from eventgate.http.problems import HTTPProblem
from eventgate.webhooks.delivery import checked_target
from eventgate.webhooks.model import PREFIX, Invalid, Subscription, parse_new, parse_update
from eventgate.webhooks.store import WebhookStore

__all__ = ["WebhookAdmin"]

log = logging.getLogger("eventgate.functions")

MAX_BODY = 64 * 1024


class WebhookAdmin:
    """Create, list, show, update and delete subscriptions. A secret is shown once, in the
    answer to the create or the update that rotated it; it is never logged."""

    def __init__(
        self, webhooks: WebhookStore, store: EventStore, functions: FunctionStore, private: bool
    ) -> None:
        """`private`: subscriptions may target private and loopback addresses."""
        self._webhooks = webhooks
        self._store = store
        self._functions = functions
        self._private = private

    async def create_webhook(self, request: Request) -> Response:
        body = await _body(request)
        try:
            subscription = parse_new(body, await self._store.head())
            checked_target(subscription.url, self._private)
        except Invalid as e:
            raise HTTPProblem(422, str(e)) from None
        await self._webhooks.create(subscription)
        location = {"Location": f"/admin/webhooks/{subscription.id}"}
        return _json(subscription.to_json(secret=True), 201, location)

    async def list_webhooks(self, request: Request) -> Response:
        return _json({"webhooks": [s.to_json() for s in await self._webhooks.all()]})

    async def show_webhook(self, request: Request) -> Response:
        """The subscription and how its deliveries stand: its function's checkpoint, lag
        (events after it, of any type), attempts, failed attempts and dead letters."""
        found = await self._found(request)
        statuses = await self._functions.status()
        f = next((f for f in statuses if f.name == found.function), None)
        delivery = None
        if f is not None:  # None until a worker has started it
            delivery = {
                "checkpoint": f.checkpoint,
                "lag": await self._store.count_after(max(f.checkpoint, found.start)),
                "invocations": f.invocations,
                "failures": f.failures,
                "dead_letters": f.dead_letters,
            }
        return _json({**found.to_json(), "delivery": delivery})

    async def update_webhook(self, request: Request) -> Response:
        body = await _body(request)
        current = await self._found(request)
        try:
            changed = parse_update(current, body)
            checked_target(changed.url, self._private)
        except Invalid as e:
            raise HTTPProblem(422, str(e)) from None
        if not await self._webhooks.update(changed):
            raise HTTPProblem(409, "the subscription changed meanwhile; read it and try again")
        return _json(changed.to_json(secret=changed.secret != current.secret))

    async def delete_webhook(self, request: Request) -> Response:
        """Delete the subscription and purge its function: checkpoints, counts, effect
        records and dead letters (the workers purge its broker consumers, and again once
        their runners of it stopped: webhooks/catalog.py)."""
        subscription_id = _id(request)
        if not await self._webhooks.delete(subscription_id):
            raise HTTPProblem(404, f"no webhook {subscription_id}")
        try:
            await self._functions.purge(PREFIX + subscription_id)
        except Exception as e:  # deleted all the same: the workers' sweep purges it later
            log.warning("webhook %s deleted; purging its function failed (%r)", subscription_id, e)
        return Response(status_code=204)

    async def _found(self, request: Request) -> Subscription:
        found = await self._webhooks.get(_id(request))
        if found is None:
            raise HTTPProblem(404, f"no webhook {_id(request)}")
        return found


def _id(request: Request) -> str:
    return str(request.path_params["id"])[:60]


async def _body(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPProblem(415, "send the subscription as application/json")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise HTTPProblem(413, f"a subscription is at most {MAX_BODY} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPProblem(400, "the body is not valid JSON") from None


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")
