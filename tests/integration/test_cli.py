"""The `eventgate` command line, run as a real process on a real data directory."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.domain.inventory import CheckInItemsToInventory, CreateInventoryItem
from eventgate.inventory import inventory_app


def eventgate(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")

    async def seed() -> None:
        system = await open_system(Settings(data_dir=directory), inventory_app())
        await system.commands.execute(CreateInventoryItem("a", "widget"))
        await system.commands.execute(CheckInItemsToInventory("a", 5))
        await system.commands.execute(CreateInventoryItem("b", "gadget"))
        await system.close()

    asyncio.run(seed())
    return directory


def test_events_are_listed_as_json_lines(data: Path) -> None:
    result = eventgate("events", "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["position"] for e in events] == [1, 2, 3]
    assert events[1]["type"] == "ItemsCheckedInToInventory" and events[1]["data"]["count"] == 5


def test_events_filter_by_stream_and_position(data: Path) -> None:
    result = eventgate("events", "--data", str(data), "--stream", "a", "--from", "1", "--json")
    assert [json.loads(line)["position"] for line in result.stdout.splitlines()] == [2]
    table = eventgate("events", "--data", str(data))
    assert "InventoryItemCreated" in table.stdout and "3 event(s)" in table.stdout


def test_projections_are_rebuilt_and_reported(data: Path) -> None:
    before = eventgate("projections", "status", "--data", str(data))
    assert before.returncode == 0 and "inventory_item_details" in before.stdout
    rebuilt = eventgate("projections", "rebuild", "--data", str(data))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt inventory_item_list, inventory_item_details" in rebuilt.stdout
    after = eventgate("projections", "status", "--data", str(data))
    rows = [line.split("│") for line in after.stdout.splitlines() if "inventory_item" in line]
    assert len(rows) == 2
    assert all([cell.strip() for cell in row[2:5]] == ["3", "3", "0"] for row in rows), after.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("events", "--data", "/nonexistent/eg"), "no event store in /nonexistent/eg"),
        (("projections", "rebuild", "nope"), "no projection named 'nope'"),
    ],
)
def test_bad_input_gets_one_line_and_a_non_zero_exit(
    data: Path, args: tuple[str, ...], message: str
) -> None:
    if "--data" not in args:
        args = (*args, "--data", str(data))
    result = eventgate(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_an_invalid_option_value_is_a_usage_error_without_traceback(data: Path) -> None:
    result = eventgate("events", "--data", str(data), "--from", "-3")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_up_runs_the_upsert_service_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "up", "--data", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert "upsert service running" in process.stdout.readline()

    async def write_and_wait() -> int:
        system = await open_system(Settings(data_dir=tmp_path), inventory_app())
        try:
            await system.commands.execute(CreateInventoryItem("a", "widget"))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                status = {s.name: s.lag for s in await system.upsert.status()}
                if set(status.values()) == {0}:
                    return 0
                await asyncio.sleep(0.05)
            return 1
        finally:
            await system.close()

    assert asyncio.run(write_and_wait()) == 0  # the running service picked the event up
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "stopped cleanly" in stdout
