"""One real `eventgate up` per test module, on a temporary data directory."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.server import Deployment, EnvoyDeployment, Server
from tests.postgres import database_for


@pytest.fixture(scope="module", params=["sqlite", "postgres", "processes", "envoy"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server | Deployment]:
    """The contract's modules run four times: `eventgate up` on SQLite files, `eventgate up`
    on a real PostgreSQL, each component its own `eventgate serve` process on PostgreSQL
    (the gateway reaching the command and query services over HTTP), and the same processes
    with two command and two query services behind Envoy, configured by `eventgate gateway
    export envoy`."""
    data = tmp_path_factory.mktemp("data")
    options: list[str] = []
    if request.param != "sqlite":
        server_dsn = request.getfixturevalue("postgres_dsn")
        options = ["--database-url", asyncio.run(database_for(server_dsn, str(data), "e"))]
    kinds = {"processes": Deployment, "envoy": EnvoyDeployment}
    server = kinds.get(request.param, Server)(data, *options)
    server.start()
    yield server
    server.stop()


def embedded_gateway_only(server: Server | Deployment, reason: str) -> None:
    """Skip a test of something only eventgate's own gateway does, when Envoy is in front."""
    if isinstance(server, EnvoyDeployment):
        pytest.skip(reason)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def create(client: httpx.Client, name: str = "widget", **extra: object) -> httpx.Response:
    response = client.post("/api/inventory-items", json={"name": name, **extra})
    assert response.status_code == 202, response.text
    return response


def item_url(response: httpx.Response) -> str:
    return response.headers["Location"]


def read(client: httpx.Client, accepted: httpx.Response, **headers: str) -> httpx.Response:
    """GET the item of a 202, waiting for the write to be visible (read-your-writes)."""
    token = accepted.headers["Consistency-Token"]
    return client.get(item_url(accepted), headers={"Consistency-Token": token, **headers})


def stock(
    client: httpx.Client, url: str, model: str, count: object, **headers: str
) -> httpx.Response:
    return client.post(
        url,
        content=f'{{"count": {count!r}}}'.replace("'", '"'),
        headers={"Content-Type": f"application/json; domain-model={model}", **headers},
    )


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium (apt-get install chromium) driven by Playwright: no browser download.
    Missing, it fails the test under CI and skips it elsewhere."""
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
