"""Schemathesis fuzzes every operation of each app's /openapi.json on a real server: no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.slow


APPS = [
    "eventgate.examples.inventory:app",
    "eventgate.examples.orders:app",
    "tests.e2e.apps.taskboard:app",
]


@pytest.mark.parametrize("app", APPS)
def test_no_input_from_the_openapi_document_causes_a_server_error(tmp_path: Path, app: str) -> None:
    server = Server(tmp_path, "--app", app).start()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "60",
                "--seed",
                "20261123",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        code, _, stderr = server.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert code == 0, stderr
