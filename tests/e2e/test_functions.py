"""Functions through a real `eventgate up`: the reference functions, a user module that
fails, is dead-lettered and replayed from the CLI while `up` runs, and the admin API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import create, item_url, stock
from tests.e2e.server import ROOT, Server, keyed_server
from tests.postgres import database_for

KEYS = {"writer": "writer-key", "admin": "admin-key"}
CONFIG = """
functions = ["tests.e2e.functions_for_up"]
[function_settings]
low_stock_threshold = 3
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]
[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
"""


@pytest.fixture(scope="module", params=["sqlite", "postgres", "nats"])
def up(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """On SQLite files, with every store on a real PostgreSQL (EVENTGATE_DATABASE_URL, which
    the CLI calls below inherit), and on SQLite with the events relayed to NATS JetStream
    and the projections and functions fed from there (EVENTGATE_BROKER_URL)."""
    directory = tmp_path_factory.mktemp("functions")
    env = {}
    if request.param == "postgres":
        dsn = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(directory)))
        env = {"EVENTGATE_DATABASE_URL": dsn}
    if request.param == "nats":
        env = {"EVENTGATE_BROKER_URL": request.getfixturevalue("nats_server").url}
    server = keyed_server(directory, CONFIG, KEYS, env=env).start()
    yield server
    server.stop()


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def cli(*args: str, server: Server | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventgate.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=server.env if server is not None else None,
    )  # fmt: skip


def eventually(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def events(up: Server) -> list[dict[str, Any]]:
    listed = cli("events", "--data", str(up.data), "--json", server=up)
    return [json.loads(line) for line in listed.stdout.splitlines()]


def test_the_low_stock_alert_publishes_once_when_stock_falls_below_the_threshold(
    up: Server,
) -> None:
    with up.client(headers=as_("writer")) as client:
        url = item_url(create(client, "bolt"))
        assert stock(client, url, "CheckInItemsToInventory", 5).status_code == 202
        assert stock(client, url, "RemoveItemsFromInventory", 1).status_code == 202  # 4 left
        assert stock(client, url, "RemoveItemsFromInventory", 2).status_code == 202  # 2 left
        assert stock(client, url, "RemoveItemsFromInventory", 1).status_code == 202  # 1 left

    def alerts() -> list[dict[str, Any]]:
        return [e for e in events(up) if e["type"] == "InventoryLowStock"]

    [alert] = eventually(alerts)
    item_id = url.rsplit("/", 1)[1]
    assert alert["data"] == {"id": item_id, "name": "bolt", "count": 2, "threshold": 3}
    time.sleep(0.5)
    assert len(alerts()) == 1  # not again while it stays below
    audit = up.data / "audit.jsonl"
    logged = eventually(lambda: audit.exists() and len(audit.read_text().splitlines()) >= 6)
    assert logged, "the audit trail did not record the events"


def test_a_failing_function_is_dead_lettered_and_replayed_from_the_cli_while_up_runs(
    up: Server,
) -> None:
    (up.data / "broken").touch()
    with up.client(headers=as_("writer")) as client:
        url = item_url(create(client, "nut"))
        renamed = client.put(url, json={"newName": "hex nut"})
        assert renamed.status_code == 202

    def letters() -> list[dict[str, Any]]:
        listed = cli(
            "dlq", "list", "--data", str(up.data), "--json", "--function", "rename_hook", server=up
        )
        assert listed.returncode == 0, listed.stderr
        return [json.loads(line) for line in listed.stdout.splitlines()]

    [letter] = eventually(letters)
    assert letter["error_type"] == "ConnectionError" and letter["attempts"] == 2
    assert letter["event"]["data"]["newName"] == "hex nut"
    shown = cli("dlq", "show", str(letter["id"]), "--data", str(up.data), server=up)
    assert json.loads(shown.stdout)["error_message"] == "webhook for 'hex nut' is down"

    listed = cli("functions", "list", "--data", str(up.data), "--json", server=up)
    functions = {f["name"]: f for f in json.loads(listed.stdout)["functions"]}
    assert set(functions) == {"audit_trail", "low_stock_alert", "rename_hook"}
    assert functions["rename_hook"]["dead_letters"] == 1

    (up.data / "broken").unlink()
    replay = cli("dlq", "replay", str(letter["id"]), "--data", str(up.data), server=up)
    assert replay.returncode == 0 and "1 dead letter(s) queued" in replay.stdout
    assert eventually(lambda: letters() == [], within=3)

    missing = cli("dlq", "show", str(letter["id"]), "--data", str(up.data), server=up)
    assert missing.returncode == 1 and f"no dead letter {letter['id']}" in missing.stderr
    assert cli("dlq", "replay", "--data", str(up.data), server=up).returncode == 2


def test_the_admin_api_needs_the_admin_scope_and_operates_dead_letters(up: Server) -> None:
    (up.data / "broken").touch()
    with up.client(headers=as_("writer")) as client:
        url = item_url(create(client, "washer"))
        assert client.put(url, json={"newName": "flat washer"}).status_code == 202
        assert client.get("/admin/functions").status_code == 403
    with up.client(headers=as_("admin")) as admin:
        listed = admin.get("/admin/functions").json()["functions"]
        assert {f["name"] for f in listed} >= {"rename_hook", "audit_trail"}

        def letters() -> list[dict[str, Any]]:
            response = admin.get("/admin/dead-letters", params={"function": "rename_hook"})
            return list(response.json()["dead_letters"])

        [letter] = eventually(letters)
        one = admin.get(f"/admin/dead-letters/{letter['id']}")
        assert one.status_code == 200 and one.json()["event"]["data"]["newName"] == "flat washer"
        assert admin.post(
            "/admin/dead-letters/replay", params={"function": "rename_hook"}
        ).json() == {"replaying": 1}
        assert eventually(
            lambda: letters()[0]["status"] == "dead" and letters()[0]["attempts"] == 4
        )
        assert admin.delete(f"/admin/dead-letters/{letter['id']}").status_code == 204
        gone = admin.get(f"/admin/dead-letters/{letter['id']}")
        assert gone.status_code == 404
        assert gone.headers["Content-Type"] == "application/problem+json"
        assert admin.delete("/admin/dead-letters/abc").status_code == 404
    (up.data / "broken").unlink()


def test_unknown_function_modules_stop_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventgate.cli", "up", "--data", str(tmp_path),
         "--port", "0", "--functions", "no_such_module"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: cannot import functions module 'no_such_module': No module named 'no_such_module'"
    ]
