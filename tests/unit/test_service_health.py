"""The health check each command and query service answers (for Envoy's and APISIX's active
health checks), behind the internal token like everything else the service answers."""

from __future__ import annotations

import httpx
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from eventgate.bootstrap import service_guard
from eventgate.gateway.internal import HEALTH_PATH, INTERNAL_HEADER

TOKEN = "a-token-of-16-chars-or-more"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("the app")(scope, receive, send)


def client(token: str | None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=service_guard(app, token))
    return httpx.AsyncClient(transport=transport, base_url="http://service")


async def test_the_health_path_answers_200_with_the_token_only() -> None:
    async with client(TOKEN) as service:
        healthy = await service.get(HEALTH_PATH, headers={INTERNAL_HEADER: TOKEN})
        assert healthy.status_code == 200 and healthy.json() == {"status": "ok"}
        assert healthy.headers["Cache-Control"] == "no-store"
        assert (
            await service.head(HEALTH_PATH, headers={INTERNAL_HEADER: TOKEN})
        ).status_code == 200
        assert (await service.get(HEALTH_PATH)).status_code == 401


async def test_without_a_token_it_answers_anyone() -> None:
    async with client(None) as service:
        assert (await service.get(HEALTH_PATH)).status_code == 200


async def test_other_paths_and_methods_reach_the_app() -> None:
    async with client(None) as service:
        assert (await service.get("/api/things")).text == "the app"
        assert (await service.post(HEALTH_PATH)).text == "the app"
