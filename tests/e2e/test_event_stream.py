"""The event stream over real HTTP (Server-Sent Events), in every layout the contract runs
in: `up` on SQLite and PostgreSQL, separate processes behind `serve gateway`, and Envoy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import create, item_url
from tests.e2e.server import Deployment, Server


def frames(client: httpx.Client, path: str, want: int, **headers: str) -> Iterator[dict[str, Any]]:
    """The first `want` messages (id, data parsed) and comments of an event stream."""
    got = 0
    with client.stream("GET", path, headers=headers, timeout=20) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        frame: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                yield {"comment": line[1:].strip()}
            elif line.startswith("id: "):
                frame["id"] = int(line[4:])
            elif line.startswith("data: "):
                frame["data"] = json.loads(line[6:])
            elif line.startswith("event: "):
                frame["event"] = line[7:]
            elif line == "" and frame:
                yield frame
                got, frame = got + 1, {}
                if got == want:
                    return


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def events(client: httpx.Client, path: str, want: int, **headers: str) -> list[dict[str, Any]]:
    return [f for f in frames(client, path, want, **headers) if "comment" not in f]


def test_a_client_sees_each_event_as_a_cloudevent_and_resumes_after_its_last_id(
    server: Server | Deployment, client: httpx.Client
) -> None:
    accepted = create(client, "stream-me")
    item = item_url(accepted).rsplit("/", 1)[1]
    traced = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}  # tracing off: passed on
    renamed = client.put(item_url(accepted), json={"newName": "streamed"}, headers=traced)
    assert renamed.status_code == 202
    mine = events(client, f"/api/events?stream={item}", 2)
    assert [f["data"]["type"] for f in mine] == ["InventoryItemCreated", "InventoryItemRenamed"]
    created = mine[0]["data"]
    assert created["specversion"] == "1.0" and created["subject"] == item
    assert created["source"] == "urn:eventgate:inventory"
    assert created["sequence"] == str(mine[0]["id"]) and created["data"]["name"] == "stream-me"
    assert created["correlationid"] == accepted.headers["X-Request-ID"]
    assert "traceparent" not in created  # no trace, none made up
    assert mine[1]["data"]["traceparent"].split("-")[1] == TRACE  # distributed tracing ext.

    # resuming with the first id gives exactly what came after it
    [after] = events(
        client, f"/api/events?stream={item}", 1, **{"Last-Event-ID": str(mine[0]["id"])}
    )
    assert after == mine[1]
    [same] = events(client, f"/api/events?stream={item}&lastEventId={mine[0]['id']}", 1)
    assert same == mine[1]


def test_an_items_own_stream_and_type_globs_filter(client: httpx.Client) -> None:
    url = item_url(create(client, "filtered"))
    assert client.put(url, json={"newName": "filtered twice"}).status_code == 202
    own = events(client, f"{url.removeprefix(str(client.base_url))}/events", 2)
    assert [f["data"]["type"] for f in own] == ["InventoryItemCreated", "InventoryItemRenamed"]
    item = url.rsplit("/", 1)[1]
    renamed = events(client, f"/api/events?stream={item}&type=*Renamed", 1)
    assert renamed == own[1:]


def test_an_idle_stream_sends_heartbeats(client: httpx.Client) -> None:
    everything = frames(client, "/api/events?type=NoSuchEvent&heartbeat=1", 10)
    assert next(everything) == {"comment": "heartbeat"}
    everything.close()


def test_bad_stream_requests_are_problems(client: httpx.Client) -> None:
    for query in ("lastEventId=x", "lastEventId=-1", "heartbeat=0", "heartbeat=nan", "type="):
        answer = client.get(f"/api/events?{query}")
        assert answer.status_code == 400, (query, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert client.post("/api/events").status_code == 405


def test_a_client_resumes_after_a_server_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        with server.client() as client:
            first = item_url(create(client, "before")).rsplit("/", 1)[1]
            [seen] = events(client, f"/api/events?stream={first}", 1)
    finally:
        server.stop()
    server = Server(tmp_path / "data").start()
    try:
        with server.client() as client:
            second = item_url(create(client, "after")).rsplit("/", 1)[1]
            [resumed] = events(client, "/api/events", 1, **{"Last-Event-ID": str(seen["id"])})
            assert resumed["data"]["subject"] == second and resumed["id"] > seen["id"]
    finally:
        server.stop()
