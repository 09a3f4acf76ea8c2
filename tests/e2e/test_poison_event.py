"""A poison event parks its stream, never the read model: over HTTP, with the CLI, across a fix.

The taskboard's boards read model has a deliberate bug: titles starting with "!" fail until
TASKBOARD_FIXED=1 is deployed, and "!!" fails even then (tests/e2e/apps/taskboard.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ROOT, Server

pytestmark = pytest.mark.slow

APP = "tests.e2e.apps.taskboard:app"


def eventgate(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", *args, "--data", str(data)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


def parked(data: Path) -> list[dict[str, Any]]:
    status = eventgate(data, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    boards = next(p for p in json.loads(status.stdout)["projections"] if p["name"] == "boards")
    return list(boards["parked"])


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def board(client: httpx.Client, title: str) -> httpx.Response:
    created = client.post("/api/boards", json={"title": title})
    assert created.status_code == 202, created.text
    return created


def read(client: httpx.Client, accepted: httpx.Response) -> httpx.Response:
    token = {"Consistency-Token": accepted.headers["Consistency-Token"]}
    return client.get(accepted.headers["Location"], headers=token)


def test_a_poison_event_parks_its_stream_others_flow_and_a_fix_and_retry_heal_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = Server(data, "--app", APP).start()
    try:
        with server.client() as client:
            renamed = board(client, "Roadmap")
            url = renamed.headers["Location"]
            assert client.put(url, json={"title": "!launch"}).status_code == 202  # poison
            later = client.put(url, json={"title": "Launch"})  # waits behind it, in order
            assert later.status_code == 202
            fresh = board(client, "!fresh")  # poison on its first event: no row at all
            bystander = board(client, "Backlog")
            # Every other stream keeps flowing, and the token waits are honest.
            assert read(client, bystander).headers["Consistency-Status"] == "current"
            stale = read(client, later)
            assert stale.status_code == 200 and stale.json()["title"] == "Roadmap"
            assert stale.headers["Consistency-Status"] == "stale"
            missing = read(client, fresh)
            assert missing.status_code == 503 and missing.headers["Retry-After"] == "60"
            assert "parked" in missing.json()["detail"]
        found = parked(data)
        assert [(p["stream"], p["type"], p["events"]) for p in found] == [
            (renamed.json()["id"], "BoardRetitled", 2),
            (fresh.json()["id"], "BoardOpened", 1),
        ]
        assert "cannot show the title '!launch'" in found[0]["error"]
    finally:
        server.stop()

    fixed = Server(data, "--app", APP, env={"TASKBOARD_FIXED": "1"}).start()  # the deployed fix
    try:
        queued = eventgate(data, "projections", "retry", "boards", "--all")
        assert queued.returncode == 0 and "2 parked stream(s)" in queued.stdout, queued.stderr
        eventually(lambda: not parked(data))
        with fixed.client() as client:
            healed = client.get(url)
            assert healed.status_code == 200 and "Consistency-Status" not in healed.headers
            assert healed.json() == {"id": renamed.json()["id"], "title": "Launch", "version": 3}
            assert client.get(fresh.headers["Location"]).json()["title"] == "!fresh"
            listed = client.get("/api/boards").json()["items"]
            assert sorted(b["title"] for b in listed) == ["!fresh", "Backlog", "Launch"]
    finally:
        fixed.stop()


def test_skip_drops_only_the_failing_event_and_a_rebuild_parks_instead_of_stopping(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    server = Server(data, "--app", APP, env={"TASKBOARD_FIXED": "1"}).start()
    try:
        with server.client() as client:
            created = board(client, "Ideas")
            url = created.headers["Location"]
            client.put(url, json={"title": "!!unsupported"})  # fails even with the fix
            after = client.put(url, json={"title": "Ideas, sorted"})
            other = board(client, "Done")
            assert read(client, other).status_code == 200
            assert read(client, after).headers["Consistency-Status"] == "stale"

            rebuilt = eventgate(data, "projections", "rebuild", "boards", "--app", APP)
            assert rebuilt.returncode == 0, rebuilt.stderr  # the rebuild parks, then goes on
            eventually(lambda: client.get(other.headers["Location"]).status_code == 200)
            assert [p["events"] for p in parked(data)] == [2]

            retried = eventgate(data, "projections", "retry", "boards", "--stream",
                                created.json()["id"])  # fmt: skip
            assert retried.returncode == 0
            eventually(lambda: parked(data)[0]["request"] is None)  # failed again: still parked

            skipped = eventgate(data, "projections", "skip", "boards", "--stream",
                                created.json()["id"])  # fmt: skip
            assert skipped.returncode == 0, skipped.stderr
            eventually(lambda: not parked(data))
            healed = client.get(url).json()
            assert healed == {"id": created.json()["id"], "title": "Ideas, sorted", "version": 3}
        nothing = eventgate(data, "projections", "skip", "boards", "--stream", "nope")
        assert nothing.returncode == 1 and "no parked stream nope" in nothing.stderr
    finally:
        server.stop()
