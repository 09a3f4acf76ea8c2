"""Every bench script starts as the README runs it (`python bench/<name>.py` from the repo root)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_SCRIPTS = sorted(ROOT.glob("bench/*.py"))


def test_there_are_bench_scripts() -> None:
    assert BENCH_SCRIPTS, f"no scripts under {ROOT / 'bench'}"


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda path: path.name)
def test_bench_script_shadows_no_module(script: Path) -> None:
    """A script's folder comes first on sys.path, so its name must not be a module's."""
    name = script.stem
    assert name not in sys.stdlib_module_names, f"{script.name} shadows the standard library"
    assert importlib.util.find_spec(name) is None, f"{script.name} shadows an installed module"


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda path: path.name)
def test_bench_script_prints_usage_on_help(script: Path) -> None:
    """`--help` imports everything the script needs, prints usage and exits 0."""
    finished = subprocess.run(
        [sys.executable, f"bench/{script.name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert "usage:" in finished.stdout.lower(), finished.stdout
