"""Schemathesis fuzzes each app's /openapi.json on a real server with every check on: no 5xx,
no schema-valid request rejected, no schema-violating one accepted, no undocumented status,
content type or response shape, in the coverage, fuzzing and stateful phases. What JSON Schema
cannot say (opaque ETags and cursors, 410 after a logical delete) is allowed narrowly in
tests/e2e/schemathesis.toml. The fuzzer reads its own writes as the docs tell clients to, with
the newest Consistency-Token (tests/e2e/schemathesis_hooks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, Server

pytestmark = pytest.mark.slow

APPS = [
    "eventgate.examples.inventory:app",
    "eventgate.examples.orders:app",
    "tests.e2e.apps.taskboard:app",
]
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.parametrize("app", APPS)
def test_the_openapi_document_of_every_app_cannot_be_faulted(tmp_path: Path, app: str) -> None:
    server = Server(tmp_path, "--app", app).start()
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                "20",
                "--seed",
                "7",
                "--generation-database",
                "none",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks"},
        )
    finally:
        code, _, stderr = server.stop()
    assert result.returncode == 0, result.stdout[-6000:]
    assert code == 0, stderr
