"""Processes outlive their PostgreSQL. While it is stopped, `serve commands`, `serve queries`,
`serve projections` and `up` keep running, answer 503 problem+json for what needs it (and
not ready on /readyz) and log the outage without a stack trace per retry; once it is back
on the same port they serve reads and writes again and follow read-model changes (a write
made after the restart reaches a waiting consistency read), without being restarted."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.server import INTERNAL_TOKEN, ROOT, Deployment
from tests.e2e.test_health import eventually
from tests.postgres import PostgresServer, database_for

pytestmark = pytest.mark.slow

HEADERS = {"X-Eventgate-Internal": INTERNAL_TOKEN}
OUTAGE = 6.0
"""Seconds PostgreSQL stays down: every part retries several times, and a function worker's
partition leases (5 s) lapse."""


def answered(method: str, url: str, **options: Any) -> httpx.Response:
    return httpx.request(method, url, headers=HEADERS, timeout=10, **options)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert "database" in response.json()["detail"]


def assert_logged_once_each(stderr: str) -> None:
    """No stack trace, and no warning or error line said twice (timestamps aside)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    said = [re.sub(r"^\S+ \S+ ", "", line) for line in stderr.splitlines()]
    said = [line for line in said if line.startswith(("WARNING", "ERROR"))]
    repeated = {line for line in said if said.count(line) > 1}
    assert not repeated, repeated


def write_then_read(commands: str, queries: str, name: str) -> httpx.Response:
    """Create an item through `commands`; read it through `queries`, waiting for it."""
    created = answered("POST", f"{commands}/api/inventory-items", json={"name": name})
    assert created.status_code == 202, created.text
    token = created.headers["Consistency-Token"]
    return httpx.get(f"{queries}{created.headers['Location']}", timeout=10,
                     headers={**HEADERS, "Consistency-Token": token})  # fmt: skip


def assert_away(commands: str, queries: str) -> None:
    """During the outage: alive, not ready, and 503 for what needs the database."""
    assert_unavailable(answered("GET", f"{queries}/api/inventory-items"))
    assert_unavailable(answered("POST", f"{commands}/api/inventory-items", json={"name": "x"}))
    for url in {commands, queries}:
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def assert_back(commands: str, queries: str) -> None:
    """After the outage: ready, serving, and following read-model changes again (a change
    made now reaches the query side's waiting read)."""
    eventually(lambda: httpx.get(f"{queries}/readyz", timeout=10).status_code == 200, 30.0)
    eventually(lambda: write_then_read(commands, queries, "after").status_code == 200, 30.0)
    shown = write_then_read(commands, queries, "followed")
    assert shown.status_code == 200, shown.text
    assert shown.headers["Consistency-Status"] == "current"
    assert shown.json()["name"] == "followed"


def test_separate_processes_serve_again_after_their_database_restarts(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    dsn = asyncio.run(database_for(own_postgres.dsn, str(tmp_path), "d"))
    deployment = Deployment(tmp_path / "data", "--database-url", dsn)
    try:
        for kind in ("commands", "queries", "projections"):
            deployment.components[kind] = deployment.component(kind).start()
        commands = deployment.components["commands"].url
        queries = deployment.components["queries"].url
        assert write_then_read(commands, queries, "before").status_code == 200

        own_postgres.halt()
        time.sleep(OUTAGE)
        for kind, component in deployment.components.items():
            assert component.process is not None and component.process.poll() is None, kind
        assert_away(commands, queries)
        own_postgres.resume()
        assert_back(commands, queries)
    finally:
        stopped = deployment.stop_all()
    for kind, (code, stdout, stderr) in stopped.items():
        assert code == 0, (kind, stderr[-3000:])
        assert "stopped cleanly" in stdout, kind
        assert_logged_once_each(stderr)


def start_up(
    data: Path, dsn: str, log: IO[str], *options: str
) -> tuple[subprocess.Popen[str], str]:
    """`eventgate up` on `dsn`, logging to the file `log` (a pipe nobody reads fills up)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "up", "--data", str(data), "--port", "0",
         "--database-url", dsn, *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = re.search(r"http://[\d.]+:\d+", banner)
    if found is None:
        process.kill()
        raise RuntimeError(f"eventgate up did not start: {banner!r}")
    return process, found.group(0)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--no-functions"], id="no-functions"),
        pytest.param([], id="functions"),
    ],
)
def test_up_serves_again_after_its_database_restarts(
    tmp_path: Path, own_postgres: PostgresServer, options: list[str]
) -> None:
    dsn = asyncio.run(database_for(own_postgres.dsn, str(tmp_path), "d"))
    with tempfile.TemporaryFile("w+") as log:
        process, url = start_up(tmp_path / "data", dsn, log, *options)
        try:
            assert write_then_read(url, url, "before").status_code == 200
            own_postgres.halt()
            time.sleep(OUTAGE)
            assert process.poll() is None
            assert_away(url, url)
            own_postgres.resume()
            assert_back(url, url)
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=30)
        log.seek(0)
        stderr = log.read()
    assert process.returncode == 0, stderr[-3000:]
    assert "stopped cleanly" in stdout
    assert_logged_once_each(stderr)


def test_workers_stopped_while_their_database_is_away_stop_cleanly(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    """SIGTERM during the outage: the checkpoints cannot be saved and the leases cannot be
    given back (they lapse; the next owner redelivers from the last saved checkpoints), and
    the process says so and exits 0 instead of failing on its way out."""
    dsn = asyncio.run(database_for(own_postgres.dsn, str(tmp_path), "d"))
    deployment = Deployment(tmp_path / "data", "--database-url", dsn)
    try:
        for kind in ("commands", "functions", "projections"):
            deployment.components[kind] = deployment.component(kind).start()
        commands = deployment.components["commands"].url
        created = answered("POST", f"{commands}/api/inventory-items", json={"name": "w"})
        assert created.status_code == 202, created.text
        own_postgres.halt()
        time.sleep(OUTAGE)
    finally:
        stopped = deployment.stop_all()
        own_postgres.resume()
    for kind, (code, stdout, stderr) in stopped.items():
        assert code == 0, (kind, stderr[-6000:])
        assert "stopped cleanly" in stdout, kind
        assert "Traceback" not in stderr, (kind, stderr[-6000:])
