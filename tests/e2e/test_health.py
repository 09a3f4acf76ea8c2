"""/healthz and /readyz on every process, and JSON logs, against real processes.

Ready means the stores answer and the checkpoints move: a stopped database or a stopped
upsert service with events waiting makes a process answer 503; a poison event (parked)
does not. JSON log lines carry the request's ids and never an API key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import installed
from tests.e2e.server import INTERNAL_TOKEN, ROOT, Component, Deployment, Server, keyed_server
from tests.nats import NatsServer, nats_binary
from tests.postgres import PostgresServer, free_port

pytestmark = pytest.mark.slow

CONFIG = """
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]
"""
KEY = "writer-secret-key-do-not-log-0123"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def lines(stderr: str) -> list[dict[str, Any]]:
    """Every line the process logged, each one JSON object (or the test fails)."""
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_up_answers_probes_without_a_key_and_logs_json_with_the_request_ids(
    tmp_path: Path,
) -> None:
    env = {"EVENTGATE_LOG_FORMAT": "json"}
    server = keyed_server(tmp_path, CONFIG, {"writer": KEY}, env=env).start()
    try:
        with server.client() as client:
            alive = client.get("/healthz")
            assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["event store"] == "ok"
            assert set(ready.json()["checks"]) >= {"read store", "projections", "functions"}
            assert client.head("/readyz").status_code == 200
            assert client.get("/api/inventory-items").status_code == 401  # the rest keeps its key
            headers = {"X-API-Key": KEY, "X-Request-ID": "req-health-1",
                       "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}  # fmt: skip
            created = client.post("/api/inventory-items", json={"name": "w"}, headers=headers)
            assert created.status_code == 202, created.text
            listed = client.get("/api/inventory-items", params={"api_key": KEY})
            assert listed.status_code in (200, 401)  # either way, the key is not logged
    finally:
        code, _, stderr = server.stop()
    assert code == 0, stderr
    logged = lines(stderr)
    assert KEY not in stderr and INTERNAL_TOKEN not in stderr
    access = [r for r in logged if r["logger"] == "eventgate.access"]
    post = next(r for r in access if r["method"] == "POST")
    assert post["path"] == "/api/inventory-items" and post["status"] == 202
    assert (post["request_id"], post["correlation_id"]) == ("req-health-1", "req-health-1")
    assert post["trace_id"] == TRACE
    assert {"time", "level", "message", "route", "duration_ms"} <= set(post)
    assert all(r["request_id"] != "req-health-1" for r in access if r["method"] == "GET")
    assert not any(r["path"] in ("/healthz", "/readyz") for r in access)  # probes: no noise


def status(data: Path, dsn: str, *args: str) -> str:
    command = [sys.executable, "-m", "eventgate.cli", "status", "--data", str(data),
               "--database-url", dsn, *args]  # fmt: skip
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT,
                           env={**os.environ, "COLUMNS": "250"})  # fmt: skip
    assert found.returncode == 0, found.stderr
    return found.stdout


def ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=10)


def test_processes_answer_probes_and_turn_unready_when_stuck_or_without_database(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    env = {"EVENTGATE_STALL_AFTER": "1", "EVENTGATE_LOG_FORMAT": "json"}
    deployment = Deployment(tmp_path, "--database-url", own_postgres.dsn, env=env)
    ports = {"projections": free_port(), "functions": free_port()}
    try:
        for kind in ("commands", "queries"):
            deployment.components[kind] = deployment.component(kind).start()
        for kind, port in ports.items():
            started = deployment.component(kind, "--admin-port", str(port)).start()
            deployment.components[kind] = started
        upstreams = ["--commands", deployment.components["commands"].url,
                     "--queries", deployment.components["queries"].url]  # fmt: skip
        deployment.components["gateway"] = deployment.component("gateway", *upstreams).start()
        deployment.url = deployment.components["gateway"].url
        probes = {kind: f"http://127.0.0.1:{port}" for kind, port in ports.items()}
        every = [deployment.url, deployment.components["commands"].url,
                 deployment.components["queries"].url, *probes.values()]  # fmt: skip
        for url in every:
            assert httpx.get(f"{url}/healthz").status_code == 200, url
            eventually(lambda url=url: ready(url).status_code == 200)
        metrics = httpx.get(f"{probes['functions']}/metrics")  # the same port serves /metrics
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "eventgate_function_dead_letters" in metrics.text
        assert httpx.get(f"{probes['functions']}/console").status_code == 404

        # the upsert service stops while events wait: queries (and the gateway) not ready
        deployment.components.pop("projections").stop()
        with deployment.client() as client:
            sent = client.post("/api/inventory-items", json={"name": "w"},
                               headers={"X-Request-ID": "req-through-gateway"})  # fmt: skip
            assert sent.status_code == 202, sent.text
        queries = deployment.components["queries"].url
        eventually(lambda: ready(queries).status_code == 503)
        stuck = ready(queries).json()
        assert stuck["checks"]["projections"].startswith("checkpoint of ")  # loopback: reasons
        assert stuck["checks"]["event store"] == "ok"
        gateway = ready(deployment.url)
        assert gateway.status_code == 503
        assert gateway.headers["content-type"] == "application/problem+json"
        assert gateway.json()["detail"] == "not ready: queries"
        assert ready(deployment.components["commands"].url).status_code == 200
        shown = status(tmp_path, own_postgres.dsn, "--json")
        by_roles = {",".join(p["roles"]): p for p in json.loads(shown)["processes"]}
        assert by_roles["queries"]["ready"] == "not ready: projections"
        assert by_roles["gateway"]["ready"] == "not ready: queries"
        assert (by_roles["commands"]["ready"], by_roles["functions"]["ready"]) == ("ready", "ready")
        assert by_roles["functions"]["address"] == probes["functions"]
        table = status(tmp_path, own_postgres.dsn)
        assert "ready" in table and "not ready: projections" in table
        assert "parked / dead letters" in table

        # the database goes away: every process with stores is not ready, and says why
        own_postgres.stop()
        eventually(lambda: ready(probes["functions"]).status_code == 503)
        gone = ready(probes["functions"]).json()
        assert gone["checks"]["event store"] != "ok"
        assert ready(deployment.components["commands"].url).status_code == 503
        assert httpx.get(f"{probes['functions']}/healthz").status_code == 200  # alive still
    finally:
        stopped = deployment.stop_all()
    logs = {}
    for kind, (_, _, stderr) in stopped.items():  # (a process's last words may be its error)
        logs[kind] = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert logs[kind], kind
        assert all({"time", "level", "logger", "message"} <= set(r) for r in logs[kind]), kind
    for kind in ("gateway", "commands"):  # the same ids on both sides of the gateway
        post = next(r for r in logs[kind] if r.get("method") == "POST")
        assert post["request_id"] == post["correlation_id"] == "req-through-gateway", kind
        assert post["status"] == 202


def test_a_parked_poison_event_keeps_the_process_ready(tmp_path: Path) -> None:
    app = "tests.e2e.apps.taskboard:app"
    server = Server(tmp_path / "data", "--app", app, env={"EVENTGATE_STALL_AFTER": "0.5"})
    server.start()
    try:
        with server.client() as client:
            poison = client.post("/api/boards", json={"title": "!!poison"})
            assert poison.status_code == 202, poison.text

            def parked() -> bool:
                found = client.get("/admin/projections").json()["projections"]
                return any(p["parked"] for p in found if p["name"] == "boards")

            eventually(parked)
            fine = client.post("/api/boards", json={"title": "fine"})
            assert client.get(fine.headers["Location"],
                              headers={"Consistency-Token": fine.headers["Consistency-Token"]}
                              ).status_code == 200  # fmt: skip
            time.sleep(1.0)  # past the stall time: a parked stream is not a stuck checkpoint
            first, second = client.get("/readyz"), client.get("/readyz")
            assert (first.status_code, second.status_code) == (200, 200), second.text
    finally:
        server.stop()


def test_the_relay_is_ready_while_connected_to_the_broker_and_not_when_it_is_gone(
    tmp_path: Path,
) -> None:
    nats = NatsServer(installed(nats_binary(), "nats-server")).start()
    data = tmp_path / "data"
    server = Server(data, "--broker", nats.url).start()  # (creates the store the relay reads)
    port = free_port()
    env = {**os.environ, "EVENTGATE_LOG_FORMAT": "json"}
    relay = Component("relay", ["--data", str(data), "--broker", nats.url,
                                "--admin-port", str(port)], env)  # fmt: skip
    try:
        with server.client() as client:
            found = client.get("/readyz")
            assert found.status_code == 200, found.text
            assert found.json()["checks"]["broker"] == "ok"
        server.stop()
        relay.start()
        probe = f"http://127.0.0.1:{port}"
        eventually(lambda: ready(probe).status_code == 200)
        assert set(ready(probe).json()["checks"]) == {"broker", "event store", "read store",
                                                      "function store"}  # fmt: skip
        nats.stop()
        eventually(lambda: ready(probe).status_code == 503)
        gone = ready(probe).json()
        assert gone["checks"]["broker"] == "not connected to the broker"
        assert gone["checks"]["event store"] == "ok"
    finally:
        if relay.process is not None:
            relay.stop(signal.SIGKILL)  # (its broker is gone: no clean close to wait for)
        if server.process is not None and server.process.poll() is None:
            server.stop()
        nats.remove()
