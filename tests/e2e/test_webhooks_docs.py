"""docs/webhooks.md's receivers, as printed there (Python with `standardwebhooks`, Node with
nothing but its standard library), receive and verify the deliveries of a real `eventgate up`
and refuse a forged one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventgate.webhooks.model import new_secret
from tests.conftest import installed
from tests.e2e.server import ROOT, Server
from tests.postgres import free_port

DOC = ROOT / "docs" / "webhooks.md"


def snippet(heading: str, language: str) -> str:
    """The first `language` code block after `heading` in the doc."""
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"{re.escape(heading)}\n.*?```{language}\n(.*?)```", text, re.DOTALL)
    assert found is not None, f"no {language} block under {heading!r} in {DOC}"
    return found.group(1)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("docs") / "data"
    server = Server(data, env={"EVENTGATE_WEBHOOKS_ALLOW_PRIVATE": "true"}).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("heading", "language", "command"),
    [
        ("### A receiver in Python", "python", [sys.executable]),
        ("### A receiver in JavaScript", "js", ["node"]),
    ],
    ids=["python", "js"],
)
def test_the_documented_receiver_verifies_every_delivery(
    up: Server, tmp_path: Path, heading: str, language: str, command: list[str]
) -> None:
    if command == ["node"]:
        command = [installed(shutil.which("node"), "nodejs")]
    source = tmp_path / ("receiver.py" if language == "python" else "receiver.mjs")
    source.write_text(snippet(heading, language))
    port, secret = free_port(), new_secret()
    output = tmp_path / "out.txt"
    env = {**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)}
    with output.open("w") as out:
        receiver = subprocess.Popen([*command, str(source)], env=env, stdout=out,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/hook"
        wait_for_port(port)
        with up.client() as client:
            made = client.post("/admin/webhooks", json={
                "url": url, "secret": secret, "types": ["InventoryItemCreated"]})  # fmt: skip
            assert made.status_code == 201, made.text
            for name in ("left", "right"):
                assert client.post("/api/inventory-items", json={"name": name}).status_code == 202
        deadline = time.monotonic() + 20
        while output.read_text().count("InventoryItemCreated") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = output.read_text().splitlines()
        assert len(lines) == 2 and all(line.startswith("InventoryItemCreated ") for line in lines)
        assert "left" in lines[0] + lines[1] and "right" in lines[0] + lines[1]
        forged = httpx.post(url, content=b"{}", headers={
            "webhook-id": "x", "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA", "Content-Type": "application/json"})  # fmt: skip
        assert forged.status_code == 401
        assert len(output.read_text().splitlines()) == 2
    finally:
        receiver.kill()
        receiver.wait()


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the receiver did not listen on {port}")
