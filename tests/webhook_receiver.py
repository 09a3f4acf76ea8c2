"""A real webhook receiver for the tests: an aiohttp server on a loopback port that checks
every delivery's signature with the `standardwebhooks` library, as a receiver would."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.postgres import free_port

__all__ = ["Receiver"]


class Receiver:
    """Receives at `url(name)`; `secrets[name]` verifies. `fail[name]`: answer 500 to the
    next so many deliveries of that name (-1: all of them until set back)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.secrets: dict[str, str] = {}
        self.fail: dict[str, int] = defaultdict(int)
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)  # every delivery
        self.rejected: list[str] = []
        self.content_types: set[str] = set()
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def unique(self, name: str) -> list[dict[str, Any]]:
        """The deliveries of `name`, each webhook-id once (as a de-duplicating receiver)."""
        seen: dict[str, dict[str, Any]] = {}
        for delivery in self.received[name]:
            seen.setdefault(delivery["webhook-id"], delivery)
        return list(seen.values())

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        try:
            event = Webhook(self.secrets[name]).verify(body, dict(request.headers))
        except (KeyError, WebhookVerificationError) as e:
            self.rejected.append(f"{name}: {e!r}")
            return web.Response(status=401)
        if self.fail[name]:
            self.fail[name] -= self.fail[name] > 0
            return web.Response(status=500, text="receiver failing on purpose")
        self.content_types.add(request.headers.get("Content-Type", ""))
        self.received[name].append(
            {"webhook-id": request.headers["webhook-id"], "event": event, "raw": orjson.loads(body)}
        )
        return web.Response(status=204)
