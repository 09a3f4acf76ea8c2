"""docs/tutorial.md, run as written: the Python files it marks with `<!-- file: NAME -->` are
written to an empty folder, served there by a real `eventgate up --app myservice:app`, and the
tutorial's requests are replayed in its order, with the statuses (and effects) it shows."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
APP = "myservice:app"

T = TypeVar("T")

_FILE = re.compile(
    r"^<!-- file: (?P<name>[\w./-]+) -->\n```python\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL
)
_STATUS_LINE = re.compile(r"^HTTP/1\.1 (\d{3}) ", re.MULTILINE)


def tutorial_files(text: str) -> dict[str, str]:
    """File name -> contents, for every marked ```python block of the tutorial."""
    return {found["name"]: found["code"] for found in _FILE.finditer(text)}


@contextmanager
def eventgate_up(folder: Path) -> Iterator[str]:
    """`eventgate up --app myservice:app` in `folder` on a free port; yields its URL and stops
    it (by its PID, SIGINT as Ctrl-C would) however the block ends."""
    log = (folder / "up.log").open("w")
    command = [sys.executable, "-m", "eventgate.cli", "up", "--app", APP, "--data", "data"]
    process = subprocess.Popen(
        [*command, "--port", "0"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.search(r"http://[\d.]+:\d+", banner)
        assert found is not None, f"eventgate up did not start: {banner!r}"
        yield found.group(0)
    finally:
        os.kill(process.pid, signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
        log.close()
    assert "eventgate stopped cleanly" in rest, (folder / "up.log").read_text()


def cli(folder: Path, *args: str) -> str:
    """An `eventgate` command run in `folder` on its data, as the tutorial runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "eventgate.cli", *args, "--app", APP, "--data", "data"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def eventually(check: Callable[[], T | None], within: float = 10.0) -> T:
    deadline = time.monotonic() + within
    while (result := check()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def titles(response: httpx.Response) -> list[str]:
    return [item["title"] for item in response.json()["items"]]


def test_the_tutorial_is_served_and_answers_as_it_shows(tmp_path: Path) -> None:
    text = TUTORIAL.read_text()
    files = tutorial_files(text)
    assert "myservice.py" in files
    assert f"eventgate up --app {APP} --data ./data" in text
    for name, code in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(code)

    statuses: list[int] = []

    def shown(response: httpx.Response, status: int) -> httpx.Response:
        """A response the tutorial shows with its status line."""
        assert response.status_code == status, response.text
        statuses.append(status)
        return response

    with eventgate_up(tmp_path) as url, httpx.Client(base_url=url, timeout=10) as client:
        # Open a ticket: 202, Location, Consistency-Token (position 1 of a fresh log)
        opened = shown(client.post("/api/tickets", json={"title": "Printer on floor 3 is jammed"}),
                       202)  # fmt: skip
        ticket = opened.headers["Location"]
        assert ticket.startswith("/api/tickets/")
        assert opened.headers["Consistency-Token"] == "ZWcxOjE"

        # Read your own write: 200, ETag
        read = shown(client.get(ticket, headers={"Consistency-Token": "ZWcxOjE"}), 200)
        assert read.headers["Consistency-Status"] == "current"
        etag = read.headers["ETag"]
        assert read.json() == {
            "id": ticket.rsplit("/", 1)[1],
            "title": "Printer on floor 3 is jammed",
            "priority": 3,
            "status": "open",
            "team": "",
            "resolution": "",
            "version": 1,
        }

        # Conditional GET: 304
        shown(client.get(ticket, headers={"If-None-Match": etag}), 304)

        # Update with If-Match: 202; the same If-Match again: 412
        shown(client.put(ticket, json={"priority": 1}, headers={"If-Match": etag}), 202)
        stale = shown(client.put(ticket, json={"priority": 2}, headers={"If-Match": etag}), 412)
        assert stale.json()["detail"] == "If-Match does not name the current version"

        # The function's effect: the urgent ticket is assigned to on-call (version 3)
        def assigned() -> httpx.Response | None:
            response = client.get(ticket)
            return response if response.json()["team"] == "on-call" else None

        after = shown(eventually(assigned), 200)
        assert after.json()["priority"] == 1
        assert after.json()["version"] == 3

        # Invalid values: 422, naming the field
        invalid = shown(client.put(ticket, json={"priority": 9}), 422)
        assert invalid.json()["detail"] == "Expected `int` <= 4 - at `$.priority`"
        untitled = shown(client.post("/api/tickets", json={"priority": 2}), 422)
        assert untitled.json()["detail"] == "Object missing required field `title`"

        # A rule: close (202), then re-prioritise (409)
        shown(client.post(ticket, json={"resolution": "Cleared the paper jam"}), 202)
        closed = shown(client.put(ticket, json={"priority": 2}), 409)
        assert closed.json()["detail"].endswith(" is closed")

        # The list: order, q and filters (the tokens are positions 5 and 6)
        created = [
            client.post("/api/tickets", json={"title": title, "priority": priority})
            for title, priority in (("Printer toner is low", 4), ("VPN drops every hour", 2))
        ]
        assert [r.status_code for r in created] == [202, 202]
        assert [r.headers["Consistency-Token"] for r in created] == ["ZWcxOjU", "ZWcxOjY"]
        every = client.get("/api/tickets", headers={"Consistency-Token": "ZWcxOjY"})
        assert titles(every) == [
            "Printer on floor 3 is jammed",
            "VPN drops every hour",
            "Printer toner is low",
        ]
        assert every.json()["next"] is None
        printers = client.get("/api/tickets", params={"q": "printer"})
        assert titles(printers) == ["Printer on floor 3 is jammed", "Printer toner is low"]
        open_printers = client.get("/api/tickets", params={"q": "printer", "status": "open"})
        assert titles(open_printers) == ["Printer toner is low"]
        on_call = client.get("/api/tickets", params={"team": "on-call"})
        assert titles(on_call) == ["Printer on floor 3 is jammed"]

        # Delete: 202, then 410 Gone, and no longer listed
        vpn = created[1].headers["Location"]
        deleted = shown(client.delete(vpn), 202)
        assert deleted.headers["Consistency-Token"] == "ZWcxOjc"
        shown(client.get(vpn, headers={"Consistency-Token": "ZWcxOjc"}), 410)
        remaining = client.get("/api/tickets")
        assert titles(remaining) == ["Printer on floor 3 is jammed", "Printer toner is low"]

        # The OpenAPI document and /docs
        document = client.get("/openapi.json").json()
        operations = {
            (method.upper(), path): [*operation["responses"]]
            for path, methods in document["paths"].items()
            for method, operation in methods.items()
            if method != "parameters"
        }
        assert [*operations] == [
            ("GET", "/api/tickets"),
            ("POST", "/api/tickets"),
            ("GET", "/api/tickets/{id}"),
            ("PUT", "/api/tickets/{id}"),
            ("POST", "/api/tickets/{id}"),
            ("DELETE", "/api/tickets/{id}"),
            ("GET", "/api/schemas"),
            ("GET", "/api/schemas/{type}"),
            ("GET", "/api/schemas/{type}/{version}"),
            ("GET", "/api/commands/{id}"),
        ]
        assert "410" in operations["GET", "/api/tickets/{id}"]
        assert "412" in operations["PUT", "/api/tickets/{id}"]
        priority = document["components"]["schemas"]["ChangePriority"]["properties"]["priority"]
        assert {"type": "integer", "minimum": 1, "maximum": 4} in priority["anyOf"]
        assert client.get("/docs").status_code == 200

        # What is stored, and what the function did (while `up` runs, as in the tutorial)
        def caught_up() -> dict[str, Any] | None:
            rows = client.get("/admin/functions").json()["functions"]
            return rows[0] if rows and rows[0]["lag"] == 0 else None

        eventually(caught_up)
        events = [json.loads(line) for line in cli(tmp_path, "events", "--json").splitlines()]
        assert [e["type"] for e in events] == [
            "TicketOpened",
            "PriorityChanged",
            "TicketAssigned",
            "TicketClosed",
            "TicketOpened",
            "TicketOpened",
            "TicketDeleted",
        ]
        changed, assignment = events[1], events[2]
        assert assignment["data"] == {"id": changed["stream_id"], "team": "on-call"}
        assert assignment["metadata"]["causationId"] == changed["id"]
        assert assignment["metadata"]["correlationId"] == changed["metadata"]["correlationId"]
        assert assignment["metadata"]["function"] == "assign_urgent"
        assert assignment["metadata"]["commandType"] == "AssignTicket"
        functions = json.loads(cli(tmp_path, "functions", "list", "--json"))["functions"]
        assert functions == [
            {
                "name": "assign_urgent",
                "triggers": ["TicketOpened", "PriorityChanged"],
                "checkpoint": 7,
                "lag": 0,
                "invocations": 4,
                "failures": 0,
                "dead_letters": 0,
            }
        ]

    assert statuses == [int(s) for s in _STATUS_LINE.findall(text)], "the statuses shown"
