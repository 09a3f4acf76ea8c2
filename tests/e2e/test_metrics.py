"""Prometheus metrics over real HTTP: `/metrics` of a real `eventgate up` moves under load,
passes `promtool check metrics`, and needs the admin scope when keys are configured."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import eventgate.metrics.families  # noqa: F401  (registers every family)
from tests.conftest import installed
from tests.e2e.conftest import create, read
from tests.e2e.server import ROOT, Deployment, Server, free_port, keyed_server
from tests.postgres import database_for

OPERATIONS = ROOT / "docs" / "operations.md"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

KEYS = {"reader": "reader-key", "admin": "admin-key"}
CONFIG = """
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read", "write"]

[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("metrics") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres", "nats"])
def loaded(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Server, str]]:
    """`eventgate up` on SQLite files, on PostgreSQL, and on SQLite relaying to JetStream;
    with the event store's backend label."""
    data = tmp_path_factory.mktemp("loaded") / "data"
    options: list[str] = []
    if request.param == "postgres":
        dsn = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(data), "m"))
        options = ["--database-url", dsn]
    if request.param == "nats":
        options = ["--broker", request.getfixturevalue("nats_server").url]
    server = Server(data, *options).start()
    yield server, "postgresql" if request.param == "postgres" else "sqlite"
    server.stop()


def scrape(client: httpx.Client, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def until_moved(client: httpx.Client, name: str, **labels: str) -> Samples:
    """Scrape until `name{labels}` is above zero (the worker runs beside the requests)."""
    deadline = time.monotonic() + 20
    while True:
        found = samples(scrape(client))
        if value(found, name, **labels) > 0 or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_counters_move_under_load(loaded: tuple[Server, str]) -> None:
    up, backend = loaded
    broker = "--broker" in up.args
    with up.client() as client:
        before = samples(scrape(client))
        for n in range(5):
            accepted = create(client, f"metered {n}")
        assert read(client, accepted).status_code == 200
        found = until_moved(client, "eventgate_function_invocations_total", function="audit_trail")
        if broker:
            found = until_moved(client, "eventgate_relay_checkpoint")
    posts = dict(component="gateway", route="/api/inventory-items", method="POST", status="202")
    moved = value(found, "eventgate_http_requests_total", **posts)
    assert moved - value(before, "eventgate_http_requests_total", **posts) == 5
    item = dict(component="gateway", route="/api/inventory-items/{id}", method="GET")
    assert value(found, "eventgate_http_request_duration_seconds_count", **item) >= 1
    appended = value(found, "eventgate_appends_total", backend=backend)
    assert appended - value(before, "eventgate_appends_total", backend=backend) >= 5
    assert value(found, "eventgate_events_appended_total", backend=backend) >= 5
    assert value(found, "eventgate_commit_batch_appends_count", backend=backend) >= 1
    details = value(found, "eventgate_projection_checkpoint", projection="inventory_item_details")
    assert details >= 5
    assert value(found, "eventgate_function_invocations_total", function="audit_trail") >= 1
    progress = "eventgate_function_lag_events" if broker else "eventgate_function_checkpoint"
    assert (progress, frozenset({("function", "audit_trail")})) in found
    if broker:
        assert value(found, "eventgate_relay_checkpoint") >= 5
        assert ("eventgate_relay_lag_events", frozenset()) in found


def test_routes_are_patterns_never_paths(up: Server) -> None:
    with up.client() as client:
        create(client, "patterned")
        client.get("/api/inventory-items/no-such-item")
        client.get("/no/such/route/at/all")
        found = samples(scrape(client))
    routes = {dict(labels)["route"] for name, labels in found if name.startswith("eventgate_http")}
    assert "/api/inventory-items/{id}" in routes
    assert "unmatched" in routes
    assert not [route for route in routes if "no-such" in route or "/no/" in route]


def test_stream_clients_are_counted_while_connected(up: Server) -> None:
    with up.client() as client, client.stream("GET", "/api/events") as stream:
        assert stream.status_code == 200
        found = samples(scrape(client))
        assert value(found, "eventgate_stream_clients", transport="sse") == 1


def test_the_exposition_passes_promtool(up: Server, tmp_path: Path) -> None:
    promtool = installed(shutil.which("promtool"), "prometheus")
    with up.client() as client:
        create(client, "linted")
        exposition = scrape(client)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint finding either


def test_metrics_need_the_admin_scope_when_keys_are_set(tmp_path: Path) -> None:
    server = keyed_server(tmp_path, CONFIG, KEYS).start()
    try:
        with server.client() as client:
            assert client.get("/metrics").status_code == 401
            refused = client.get("/metrics", headers={"X-API-Key": KEYS["reader"]})
            assert refused.status_code == 403
            assert refused.headers["content-type"] == "application/problem+json"
            assert "eventgate_http_requests_total" in scrape(client, **{"X-API-Key": "admin-key"})
            assert client.post("/api/inventory-items", json={"name": "w"}).status_code == 401
            assert client.get("/no/such/route").status_code == 401
            reader = {"X-API-Key": KEYS["reader"]}
            assert client.get("/admin/dead-letters/x", headers=reader).status_code == 403
            found = samples(scrape(client, **{"X-API-Key": "admin-key"}))
    finally:
        server.stop()
    labelled = {(dict(labels)["route"], dict(labels)["status"]) for (name, labels) in found
                if name == "eventgate_http_requests_total"}  # fmt: skip
    # a refusal is labelled with the route its path matched; a path no route takes: unmatched
    assert ("/api/inventory-items", "401") in labelled
    assert ("/admin/dead-letters/{id}", "403") in labelled
    assert ("/metrics", "401") in labelled and ("/metrics", "403") in labelled
    assert ("unmatched", "401") in labelled


ALERT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'eventgate_function_dead_letters{{function="audit_trail"}}'
        values: '0 0 2 2 2'
      - series: 'eventgate_projection_lag_seconds{{projection="inventory_item_list"}}'
        values: '0+30x10'
    alert_rule_test:
      - eval_time: 1m
        alertname: EventgateDeadLetters
        exp_alerts: []
      - eval_time: 4m
        alertname: EventgateDeadLetters
        exp_alerts:
          - exp_labels: {{severity: warning, function: audit_trail}}
            exp_annotations:
              summary: "Function audit_trail holds 2 dead letter(s)"
              description: {dead_letters}
      - eval_time: 3m
        alertname: EventgateProjectionLagging
        exp_alerts: []
      - eval_time: 10m
        alertname: EventgateProjectionLagging
        exp_alerts:
          - exp_labels: {{severity: warning, projection: inventory_item_list}}
            exp_annotations:
              summary: "Read model inventory_item_list is 5m 0s behind the log"
              description: {lagging}
"""


def test_the_alert_rules_pass_promtool_and_fire(tmp_path: Path) -> None:
    promtool = installed(shutil.which("promtool"), "prometheus")
    rules = ROOT / "docs" / "alerts.yml"
    checked = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cases = tmp_path / "alerts_test.yml"
    described = {  # the static text; the summaries' templates are checked as rendered
        rule["alert"]: json.dumps(rule["annotations"]["description"])
        for rule in yaml.safe_load(rules.read_text())["groups"][0]["rules"]
    }
    cases.write_text(
        ALERT_TESTS.format(
            rules=rules,
            dead_letters=described["EventgateDeadLetters"],
            lagging=described["EventgateProjectionLagging"],
        )
    )
    fired = subprocess.run([promtool, "test", "rules", cases], capture_output=True, text=True)
    assert fired.returncode == 0, fired.stdout + fired.stderr


def test_every_metric_is_documented_and_the_dashboard_names_no_other() -> None:
    documented = set(re.findall(r"^\| `(eventgate_[a-z_]+)`", OPERATIONS.read_text(), re.M))
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    named = set(
        re.findall(r"eventgate_[a-z_]+", exprs + (ROOT / "docs" / "alerts.yml").read_text())
    )
    suffixes = re.compile(r"_(bucket|sum|count)$")
    assert {suffixes.sub("", name) for name in named} <= documented
    assert {name.removesuffix("_total") for name in documented} == set(families())


def families() -> Iterator[str]:
    """Every eventgate metric of the registry (what families.py defines)."""
    for family in REGISTRY.collect():
        if family.name.startswith("eventgate_"):
            yield family.name


MOVED = {  # what each process counts of one item created and read through the gateway
    "commands": ("eventgate_http_requests_total", {"component": "commands",
                 "route": "/api/inventory-items", "method": "POST", "status": "202"}),
    "queries": ("eventgate_http_requests_total", {"component": "queries",
                "route": "/api/inventory-items/{id}", "method": "GET", "status": "200"}),
    "projections": ("eventgate_projection_checkpoint", {"projection": "inventory_item_details"}),
    "functions": ("eventgate_function_invocations_total", {"function": "audit_trail"}),
}  # fmt: skip


def test_processes_without_a_gateway_serve_metrics_on_their_admin_port(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path / "data")
    ports = {kind: free_port() for kind in ("commands", "queries", "projections", "functions")}
    try:
        for kind, port in ports.items():
            started = deployment.component(kind, "--admin-port", str(port)).start()
            deployment.components[kind] = started
        upstreams = ["--commands", deployment.components["commands"].url,
                     "--queries", deployment.components["queries"].url]  # fmt: skip
        deployment.components["gateway"] = deployment.component("gateway", *upstreams).start()
        deployment.url = deployment.components["gateway"].url
        with deployment.client() as client:
            accepted = create(client, "separately metered")
            assert read(client, accepted).status_code == 200
        scraped = {}
        for kind, port in ports.items():
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                name, labels = MOVED[kind]
                scraped[kind] = until_moved(client, name, **labels)
    finally:
        deployment.stop_all()
    for kind, (name, labels) in MOVED.items():
        assert value(scraped[kind], name, **labels) >= 1, kind


def test_an_admin_port_for_several_workers_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "eventgate.cli", "serve", "projections", "--data",
               str(tmp_path), "--workers", "2", "--admin-port", str(free_port())]  # fmt: skip
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "--admin-port needs --workers 1" in refused.stderr
    assert "Traceback" not in refused.stderr
