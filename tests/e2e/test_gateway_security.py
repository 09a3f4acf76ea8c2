"""The gateway's guards over real HTTP: API keys, scopes, rate limits, size limits; the same
tests against the embedded gateway (`up`) and Envoy configured by `gateway export envoy`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import EnvoyDeployment, Server, keyed_config, keyed_server
from tests.postgres import database_for

KEYS = {"reader": "reader-key", "writer": "writer-key", "admin": "admin-key"}
CONFIG = """
[gateway]
max_body_bytes = 2048

[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
rate_limit = "5/minute"

[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]

[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
"""


@pytest.fixture(scope="module", params=["up", "envoy"])
def secured(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server | EnvoyDeployment]:
    """`eventgate up` with the config, and the same config exported to Envoy in front of two
    command and two query services on PostgreSQL (the keys from EVENTGATE_KEY_<NAME>)."""
    directory = tmp_path_factory.mktemp("secured")
    if request.param == "up":
        server: Server | EnvoyDeployment = keyed_server(directory, CONFIG, KEYS)
    else:
        url = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(directory)))
        config = keyed_config(directory, CONFIG, KEYS)
        server = EnvoyDeployment(directory / "data", "--database-url", url, config=config,
                                 keys=KEYS)  # fmt: skip
    server.start()
    yield server
    server.stop()


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def test_a_missing_or_unknown_key_is_401(secured: Server) -> None:
    with secured.client() as client:
        missing = client.get("/api/inventory-items")
        assert missing.status_code == 401
        assert missing.headers["Content-Type"] == "application/problem+json"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/api/inventory-items", headers={"X-API-Key": "nope"}).status_code == 401


def test_keys_are_accepted_as_bearer_or_x_api_key(secured: Server) -> None:
    with secured.client() as client:
        assert client.get("/api/inventory-items", headers=bearer("writer")).status_code == 200
        header = {"X-API-Key": KEYS["writer"]}
        assert client.get("/api/inventory-items", headers=header).status_code == 200


def test_a_consumer_without_the_scope_is_403(secured: Server) -> None:
    with secured.client() as client:
        response = client.post("/api/inventory-items", json={"name": "x"}, headers=bearer("reader"))
        assert response.status_code == 403
        allowed = client.post("/api/inventory-items", json={"name": "x"}, headers=bearer("admin"))
        assert allowed.status_code == 202


def test_a_client_cannot_claim_to_be_another_consumer(secured: Server) -> None:
    with secured.client() as client:
        headers = {**bearer("writer"), "X-Eventgate-Consumer": "admin", "Idempotency-Key": "k1"}
        first = client.post("/api/inventory-items", json={"name": "a"}, headers=headers)
        spoof = client.post(
            "/api/inventory-items",
            json={"name": "a"},
            headers={**bearer("admin"), "Idempotency-Key": "k1"},
        )
        assert first.status_code == spoof.status_code == 202
        assert spoof.json() != first.json()  # keys are scoped to the real consumer


def test_over_the_rate_limit_is_429_with_retry_after(secured: Server) -> None:
    with secured.client() as client:
        statuses = []
        for _ in range(7):
            response = client.get("/api/inventory-items", headers=bearer("reader"))
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.headers["RateLimit-Limit"] == "5"
                assert int(response.headers["RateLimit-Remaining"]) >= 0
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
        assert int(response.headers["Retry-After"]) >= 1


def test_a_body_over_the_limit_is_413(secured: Server) -> None:
    big = {"name": "x" * 4000}
    with secured.client() as client:
        response = client.post("/api/inventory-items", json=big, headers=bearer("writer"))
        assert response.status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "'
            yield b"x" * 4000
            yield b'"}'

        chunked = client.post(
            "/api/inventory-items",
            content=chunks(),
            headers={**bearer("writer"), "Content-Type": "application/json"},
        )
        assert chunked.status_code == 413


def test_a_small_chunked_body_passes(secured: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": '
        yield b'"chunked"}'

    with secured.client() as client:
        response = client.post(
            "/api/inventory-items",
            content=chunks(),
            headers={**bearer("writer"), "Content-Type": "application/json"},
        )
        assert response.status_code == 202


def test_the_openapi_document_needs_no_key(secured: Server) -> None:
    with secured.client() as client:
        assert client.get("/openapi.json").status_code == 200


def test_a_bad_config_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[gateway.consumers]]\nname = "x"\nkey_sha256 = "abc"\nscopes = ["read"]\n')
    server = Server(tmp_path / "data", "--config", str(config))
    with pytest.raises(RuntimeError) as failed:
        server.start()
    assert "key_sha256 must be 64 hex digits" in str(failed.value)
    assert "Traceback" not in str(failed.value)
    assert server.process is not None and server.process.returncode == 1


def test_unknown_paths_are_404_problems(secured: Server) -> None:
    with secured.client() as client:
        response = client.get("/nope", headers=bearer("writer"))
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"
