"""The `--admin-port` server over real HTTP on loopback: /healthz, /readyz and /metrics from
one uvicorn server (the sampler read at each scrape), 404 and 405 as problem+json, and a
port already taken refused in one line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from eventgate.cli.admin_port import admin_server, one_process
from eventgate.cli.common import CliError
from eventgate.cli.serving import bind
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.health.readiness import Readiness
from eventgate.metrics.sampling import Sampler
from tests.postgres import free_port

PROBLEM = "application/problem+json"


async def fine() -> str | None:
    return None


async def one_relayed() -> int:
    return 1


async def broken() -> str | None:
    raise ConnectionRefusedError("broker at 127.0.0.1:4222 refused")


@asynccontextmanager
async def served(readiness: Readiness, sampler: Sampler | None) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    [server] = admin_server(port, readiness, sampler)
    running = asyncio.create_task(server)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_one_port_answers_the_probes_and_the_metrics(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    await store.append("s-1", [NewEvent("E", {"n": n}) for n in range(3)])
    sampler = Sampler(store)
    sampler.relay(one_relayed)  # two events left to relay
    readiness = Readiness({"event store": fine, "broker": broken})
    try:
        async with served(readiness, sampler) as client:
            alive = await client.get("/healthz")
            assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
            assert (await client.head("/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["content-type"] == PROBLEM
            assert ready.json()["detail"] == "not ready: broker"
            assert ready.json()["checks"] == {  # a loopback client is told why
                "event store": "ok",
                "broker": "ConnectionRefusedError: broker at 127.0.0.1:4222 refused",
            }
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
            assert "\neventgate_relay_lag_events 2.0\n" in metrics.text
            asked = await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
            assert asked.headers["content-type"].startswith("application/openmetrics-text")
            assert asked.text.endswith("# EOF\n")
    finally:
        await store.close()


async def test_other_paths_and_methods_are_refused_as_problems() -> None:
    async with served(Readiness({"event store": fine}), None) as client:
        assert (await client.get("/readyz")).json()["status"] == "ready"
        posted = await client.post("/metrics")
        assert (posted.status_code, posted.headers["allow"]) == (405, "GET, HEAD")
        assert posted.headers["content-type"] == PROBLEM
        for path in ("/console", "/api/inventory-items"):
            missing = await client.get(path)
            assert (missing.status_code, missing.headers["content-type"]) == (404, PROBLEM)
        assert (await client.post("/healthz")).status_code == 404


def test_a_port_already_taken_is_one_clear_error() -> None:
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(CliError, match=f"cannot listen on 127.0.0.1:{port}"):
            admin_server(port, Readiness())
    finally:
        taken.close()


def test_an_admin_port_needs_one_worker() -> None:
    one_process(None, 4)
    one_process(9101, 1)
    with pytest.raises(CliError, match="--admin-port needs --workers 1"):
        one_process(9101, 2)
