"""Schemathesis fuzzes every operation of /openapi.json against a real server: no 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.slow


def test_no_input_from_the_openapi_document_causes_a_server_error(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
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
