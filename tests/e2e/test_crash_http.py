"""kill -9 during a stream of commands: every command that got a 202 survives the restart,
in the log and in the read model."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.slow


async def fire(server: Server, accepted: list[tuple[str, str]], enough: asyncio.Event) -> None:
    """Create items from 16 clients until the server dies; remember each (id, name) that got
    a 202, and set `enough` once there are 300."""
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:

        async def worker(w: int) -> None:
            n = 0
            while True:
                name = f"crash-{w}-{n}"
                try:
                    response = await client.post("/api/inventory-items", json={"name": name})
                except httpx.HTTPError:
                    return  # the server died under us: this one never got an answer
                if response.status_code == 202:
                    accepted.append((response.json()["id"], name))
                    if len(accepted) >= 300:
                        enough.set()
                n += 1

        await asyncio.gather(*(worker(w) for w in range(16)))


async def test_every_202_survives_kill_minus_9(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    accepted: list[tuple[str, str]] = []
    enough = asyncio.Event()
    firing = asyncio.create_task(fire(server, accepted, enough))
    await enough.wait()
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
    await firing
    server.stop(signal.SIGKILL)

    server = Server(tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            # the upsert service catches up from its checkpoint; wait for the head
            marker = await client.post("/api/inventory-items", json={"name": "marker"})
            token = {"Consistency-Token": marker.headers["Consistency-Token"]}
            for item_id, name in accepted:
                details = await client.get(f"/api/inventory-items/{item_id}", headers=token)
                assert details.status_code == 200, (item_id, details.text)
                assert details.json()["name"] == name
    finally:
        server.stop()
