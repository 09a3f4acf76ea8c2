"""`GET /healthz` and `GET /readyz`, in front of any ASGI app (a service, the admin port).

/healthz: 200 while the process answers HTTP (it touches nothing: a dead database must not
get every instance restarted). /readyz: 200 when every readiness check passes, else 503
problem+json naming the checks that failed. Neither needs a key (a probe rarely has one),
so neither says more than the names of the failing checks to an ordinary client; each
check's reason (a store's error, which projection is stuck) goes only to a client on
loopback: an operator on the machine, a sidecar, or the `--admin-port` of a `serve` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Sequence

import httpx
import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.health.readiness import Readiness
from eventgate.http.problems import problem

__all__ = ["HEALTHZ", "READYZ", "WithProbes", "probe_all"]

HEALTHZ = "/healthz"
READYZ = "/readyz"
_READ = ("GET", "HEAD")
_NO_STORE = {"Cache-Control": "no-store"}


class WithProbes:
    """`app`, with GET or HEAD /healthz and /readyz answered before it (no key needed)."""

    def __init__(self, app: ASGIApp, readiness: Readiness) -> None:
        self._app = app
        self._readiness = readiness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or path not in (HEALTHZ, READYZ) or scope["method"] not in _READ:
            await self._app(scope, receive, send)
            return
        answer = _alive() if path == HEALTHZ else await self._ready(_from_loopback(scope))
        await answer(scope, receive, send)

    async def _ready(self, detailed: bool) -> Response:
        found = await self._readiness.run()
        failed = {name: reason for name, reason in found.items() if reason is not None}
        if not failed:
            body = {"status": "ready", "checks": {name: "ok" for name in found}}
            return Response(orjson.dumps(body), 200, _NO_STORE, "application/json")
        checks = {n: (failed[n] if detailed else "failed") if n in failed else "ok" for n in found}
        return problem(503, f"not ready: {', '.join(failed)}", _NO_STORE, checks=checks)


def _alive() -> Response:
    return Response(b'{"status": "alive"}', 200, _NO_STORE, "application/json")


def _from_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(client[0]).is_loopback
    return False


async def probe_all(addresses: Sequence[str], wait: float = 2.0) -> dict[str, str]:
    """What each address's /readyz says: "ready", "not ready: <checks>" or "unreachable",
    each within `wait` seconds (addresses that are empty are left out)."""
    wanted = sorted({a for a in addresses if a})
    async with httpx.AsyncClient(timeout=wait) as client:
        found = await asyncio.gather(*(_probe(client, a) for a in wanted))
    return dict(zip(wanted, found, strict=True))


async def _probe(client: httpx.AsyncClient, address: str) -> str:
    try:
        answer = await client.get(f"{address.rstrip('/')}{READYZ}")
    except httpx.HTTPError:
        return "unreachable"
    if answer.status_code == 200:
        return "ready"
    try:
        checks = answer.json().get("checks", {}) if answer.status_code == 503 else {}
    except ValueError:
        checks = {}
    failed = [name for name, state in checks.items() if state != "ok"]
    return f"not ready: {', '.join(failed)}" if failed else f"answered {answer.status_code}"
