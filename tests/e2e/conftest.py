"""One real `eventgate up` per test module, on a temporary data directory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

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
