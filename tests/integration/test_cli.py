"""The `eventgate` command line, run as a real process on a real data directory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import CheckInItemsToInventory, CreateInventoryItem
from tests.e2e.server import Server


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
        (("serve", "relay"), "serve relay needs --broker nats://host:4222"),
        (("serve", "relay", "--broker", "http://x"), "the broker URL must start with nats://"),
        (("serve", "relay", "--broker", "nats://127.0.0.1:1"), "cannot reach the broker at"),
        (("status", "--broker", "nats://127.0.0.1:1"), "cannot reach the broker at"),
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


def test_up_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        with server.client() as client:
            created = client.post("/api/inventory-items", json={"name": "widget"})
            assert created.status_code == 202
            token = created.headers["Consistency-Token"]
            item = client.get(created.headers["Location"], headers={"Consistency-Token": token})
            assert item.status_code == 200 and item.json()["name"] == "widget"
    finally:
        code, stdout, stderr = server.stop()
    assert code == 0, stderr
    assert "stopped cleanly" in stdout


def test_up_refuses_a_public_interface_without_api_keys(tmp_path: Path) -> None:
    result = eventgate("up", "--data", str(tmp_path), "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 with no API keys" in result.stderr


BROKEN_APP = """
from dataclasses import dataclass
from eventgate import App, Command, ItemView, Projection, Resource
from eventgate.examples.inventory import inventory_app

@dataclass(frozen=True)
class Stray(Command):
    pass

inventory = inventory_app()
rows = inventory.projections[1]
unknown_command = Resource("/api/stray", post=Stray, item=ItemView(rows, fields=["id"]))
unknown_column = Resource("/api/rows", item=ItemView(rows, fields=["id", "colour"]))
"""


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module:app", "cannot import app module 'no_such_module'"),
        ("eventgate.examples.inventory:nothing", "has no attribute 'nothing'"),
        ("eventgate.examples.inventory", "must look like module:attribute"),
        ("eventgate.examples.inventory:INVENTORY_PROJECTIONS", "not an eventgate App"),
        ("broken_app:with_unknown_command", "Stray is not a command of the app"),
        ("broken_app:with_unknown_column", "has no column ['colour']"),
    ],
)
def test_a_wrong_app_is_one_line_and_exit_1_before_anything_starts(
    tmp_path: Path, reference: str, message: str
) -> None:
    (tmp_path / "broken_app.py").write_text(
        BROKEN_APP + "with_unknown_command = lambda: App('x', inventory.commands, inventory.events,"
        " inventory.projections, resources=[unknown_command])\n"
        + "with_unknown_column = lambda: App('x', inventory.commands, inventory.events,"
        " inventory.projections, resources=[unknown_column])\n"
    )
    command = [sys.executable, "-m", "eventgate.cli", "up", "--data", str(tmp_path / "data")]
    result = subprocess.run(
        [*command, "--port", "0", "--app", reference],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == "" and not (tmp_path / "data").exists()  # nothing half-started


def test_the_config_file_names_the_app(tmp_path: Path) -> None:
    config = tmp_path / "eventgate.toml"
    config.write_text('app = "tests.e2e.apps.taskboard:app"\n')
    server = Server(tmp_path / "data", "--config", str(config)).start()
    try:
        assert "app taskboard" in server.banner
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["commands", "projections"])
def test_workers_that_cannot_start_stop_their_supervisor_with_one_line(
    kind: str, tmp_path: Path
) -> None:
    """A wrong database URL under --workers 2: the workers' one-line error and exit 1, not a
    restart loop; and the URL (with its password) never on a worker's command line."""
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere"
    ports = ["--port", "0"] if kind == "commands" else []
    args = ["serve", kind, "--workers", "2", "--data", str(tmp_path), *ports]
    command = [sys.executable, "-m", "eventgate.cli", *args, "--database-url", url]
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert f"{kind} workers failed to start" in result.stderr
    assert "restarting" not in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
