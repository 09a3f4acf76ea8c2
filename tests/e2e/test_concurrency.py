"""Concurrency over real HTTP: If-Match races, read-your-writes under load, idempotency."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.e2e.conftest import create, item_url, read
from tests.e2e.server import Server


async def test_thirty_concurrent_renames_with_one_if_match_have_one_winner(server: Server) -> None:
    with server.client() as client:
        created = create(client)
        etag = read(client, created).headers["ETag"]
    url = item_url(created)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        responses = await asyncio.gather(
            *(
                client.put(url, json={"newName": f"name-{n}"}, headers={"If-Match": etag})
                for n in range(30)
            )
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] + [412] * 29


async def test_read_your_writes_holds_under_concurrent_load(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def write_then_read(n: int) -> tuple[str, str]:
            created = await client.post("/api/inventory-items", json={"name": f"ryw-{n}"})
            token = created.headers["Consistency-Token"]
            details = await client.get(
                created.headers["Location"], headers={"Consistency-Token": token}
            )
            assert details.headers["Consistency-Status"] == "current"
            return f"ryw-{n}", details.json()["name"]

        pairs = await asyncio.gather(*(write_then_read(n) for n in range(60)))
    assert all(wrote == got for wrote, got in pairs)


def test_an_idempotent_retry_gets_the_first_answer_and_appends_nothing(
    client: httpx.Client,
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/inventory-items", json={"name": "once"}, headers=key)
    retry = client.post("/api/inventory-items", json={"name": "once"}, headers=key)
    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    other = client.post("/api/inventory-items", json={"name": "twice"}, headers=key)
    assert other.status_code == 422


def test_an_idempotency_key_is_scoped_to_the_path(client: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    created = client.post("/api/inventory-items", json={"name": "a"}, headers=key)
    moved = client.post(
        item_url(created),
        content=b'{"count": 3}',
        headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory", **key},
    )
    again = client.post(
        item_url(created),
        content=b'{"count": 3}',
        headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory", **key},
    )
    assert moved.status_code == again.status_code == 202
    assert read(client, again).json()["currentCount"] == 3


def test_idempotency_survives_a_restart(tmp_path: Path) -> None:
    key = {"Idempotency-Key": "restart-key"}
    server = Server(tmp_path).start()
    try:
        with server.client() as client:
            first = client.post("/api/inventory-items", json={"name": "durable"}, headers=key)
    finally:
        server.stop()
    server = Server(tmp_path).start()
    try:
        with server.client() as client:
            retry = client.post("/api/inventory-items", json={"name": "durable"}, headers=key)
            listing = client.get("/api/inventory-items", params={"q": "durable"})
    finally:
        server.stop()
    assert retry.status_code == 202 and retry.json() == first.json()
    assert len(listing.json()["items"]) == 1


def test_the_request_id_becomes_the_correlation_id(tmp_path: Path) -> None:
    server = Server(tmp_path).start()
    try:
        with server.client() as client:
            response = client.post(
                "/api/inventory-items", json={"name": "traced"}, headers={"X-Request-ID": "req-42"}
            )
            assert response.headers["X-Request-ID"] == "req-42"
            assert client.get("/api/inventory-items").headers["X-Request-ID"]
    finally:
        server.stop()
    listed = subprocess.run(
        [sys.executable, "-m", "eventgate.cli", "events", "--data", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    [event] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert event["metadata"]["correlationId"] == "req-42"
    assert event["metadata"]["causationId"] == response.json()["commandId"]
