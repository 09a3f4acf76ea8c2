"""The event stream over WebSocket, over real HTTP in every layout the contract runs in:
`up` on SQLite and PostgreSQL, separate processes behind `serve gateway` (which relays the
WebSocket), and Envoy; then across a server restart, and behind API keys and scopes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import create, item_url
from tests.e2e.server import Deployment, EnvoyDeployment, Server, keyed_config, keyed_server
from tests.e2e.socket import PROTOCOL, EventSocket
from tests.e2e.test_event_stream import events as sse_events
from tests.postgres import database_for


def item_of(accepted: httpx.Response) -> str:
    return item_url(accepted).rsplit("/", 1)[1]


def test_two_subscriptions_on_one_connection_each_get_their_events_in_order(
    server: Server | Deployment, client: httpx.Client
) -> None:
    first, second = item_of(create(client, "one")), item_of(create(client, "two"))
    assert client.put(f"/api/inventory-items/{first}", json={"newName": "uno"}).status_code == 202
    with EventSocket(server.url) as socket:
        assert socket.connection.subprotocol == PROTOCOL
        socket.subscribe("created", types=["InventoryItemCreated"], streams=[first, second])
        socket.subscribe("renamed", types=["*Renamed"], streams=[first])
        got = socket.events({"created": 2, "renamed": 1})
    assert [e["subject"] for e in got["created"]] == [first, second]
    assert [e["type"] for e in got["renamed"]] == ["InventoryItemRenamed"]
    # each event exactly as the SSE stream's data line
    assert sse_events(client, f"/api/events?stream={first}", 2)[1]["data"] == got["renamed"][0]
    created = got["created"][0]
    assert created["specversion"] == "1.0" and created["data"]["name"] == "one"
    assert int(created["sequence"]) < int(got["created"][1]["sequence"])


def test_a_subscription_starts_right_after_the_position_it_names(
    server: Server | Deployment, client: httpx.Client
) -> None:
    item = item_of(create(client, "resumed"))
    for name in ("resumed once", "resumed twice"):
        assert client.put(f"/api/inventory-items/{item}", json={"newName": name}).status_code == 202
    with EventSocket(server.url) as socket:
        socket.subscribe("all", streams=[item])
        every = socket.events({"all": 3})["all"]
        socket.subscribe("rest", streams=[item], after=every[0]["sequence"])  # as the string
        socket.subscribe("last", streams=[item], after=int(every[1]["sequence"]))
        rest = socket.events({"rest": 2, "last": 1})
        assert rest == {"rest": every[1:], "last": every[2:]}
        socket.send(type="unsubscribe", subscription="rest")
        assert socket.next() == {"type": "unsubscribed", "subscription": "rest"}


def test_unsubscribing_stops_the_events_of_that_subscription(
    server: Server | Deployment, client: httpx.Client
) -> None:
    item = item_of(create(client, "followed"))
    with EventSocket(server.url) as socket:
        socket.subscribe("gone", streams=[item])
        [created] = socket.events({"gone": 1})["gone"]
        socket.send(type="unsubscribe", subscription="gone")
        assert socket.next() == {"type": "unsubscribed", "subscription": "gone"}
        assert client.put(f"/api/inventory-items/{item}", json={"newName": "x"}).status_code == 202
        # a second subscription sees the rename; the first one never does
        socket.subscribe("probe", streams=[item], after=created["sequence"])
        [renamed] = socket.events({"probe": 1})["probe"]
        assert renamed["type"] == "InventoryItemRenamed"
        socket.subscribe("gone", streams=[item], after=renamed["sequence"])  # the id is free


BAD = [
    ("{not json", 400, None),
    ('["a list"]', 422, None),
    ('{"type": "publish", "subscription": "s1"}', 422, "s1"),
    ('{"type": "subscribe"}', 422, None),
    ('{"type": "subscribe", "subscription": ""}', 422, None),
    ('{"type": "subscribe", "subscription": "' + "x" * 65 + '"}', 422, None),
    ('{"type": "subscribe", "subscription": "s2", "types": "Inventory*"}', 422, "s2"),
    ('{"type": "subscribe", "subscription": "s3", "types": [""]}', 422, "s3"),
    ('{"type": "subscribe", "subscription": "s4", "streams": [1]}', 422, "s4"),
    ('{"type": "subscribe", "subscription": "s5", "after": -1}', 422, "s5"),
    ('{"type": "subscribe", "subscription": "s6", "after": "x"}', 422, "s6"),
    ('{"type": "subscribe", "subscription": "s7", "after": true}', 422, "s7"),
    ('{"type": "unsubscribe", "subscription": "never"}', 404, "never"),
]


def test_bad_messages_are_answered_with_problems_and_the_connection_stays_usable(
    server: Server | Deployment, client: httpx.Client
) -> None:
    item = item_of(create(client, "still usable"))
    with EventSocket(server.url) as socket:
        for text, status, subscription in BAD:
            socket.raw(text)
            error = socket.next()
            assert error["type"] == "error" and error["subscription"] == subscription, text
            problem = error["problem"]
            assert problem["status"] == status and problem["detail"], text
            assert set(problem) == {"type", "title", "status", "detail"}
        socket.raw(b"\x00binary")
        assert socket.next()["problem"]["status"] == 400
        socket.subscribe("twice", streams=[item])
        [event] = socket.events({"twice": 1})["twice"]
        socket.send(type="subscribe", subscription="twice")
        assert socket.next()["problem"]["status"] == 409
        for n in range(31):  # 32 subscriptions at most
            socket.subscribe(f"more-{n}", types=["NoSuchEvent"])
        socket.send(type="subscribe", subscription="one too many")
        error = socket.next()
        assert error["problem"]["status"] == 422 and "32" in error["problem"]["detail"]
        socket.send(type="unsubscribe", subscription="twice")
        assert socket.next() == {"type": "unsubscribed", "subscription": "twice"}
        socket.subscribe("again", streams=[item])
        assert socket.events({"again": 1})["again"] == [event]


def test_a_message_over_the_size_limit_closes_with_1009(server: Server | Deployment) -> None:
    with EventSocket(server.url) as socket:
        socket.raw(
            '{"type": "subscribe", "subscription": "big", "types": ["' + "x" * 70_000 + '"]}'
        )
        with pytest.raises(ConnectionClosed) as closed:
            socket.next()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_plain_get_is_told_to_upgrade(client: httpx.Client) -> None:
    answer = client.get("/api/events/ws")
    assert answer.status_code == 426  # (Envoy drops the Upgrade header: hop-by-hop)
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_socket_resumes_after_a_server_restart_with_exactly_what_came_after(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path / "data").start()
    try:
        with server.client() as client:
            first = item_of(create(client, "before"))
        with EventSocket(server.url) as socket:
            socket.subscribe("mine", types=["InventoryItemCreated"])
            [seen] = socket.events({"mine": 1})["mine"]
            assert seen["subject"] == first
            server.stop()  # the server closes the connection: it restarts
            with pytest.raises(ConnectionClosed):
                socket.next()
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
    server = Server(tmp_path / "data").start()
    try:
        with server.client() as client:
            second = item_of(create(client, "after"))
            third = item_of(create(client, "after that"))
        with EventSocket(server.url) as socket:
            socket.subscribe("mine", types=["InventoryItemCreated"], after=seen["sequence"])
            resumed = socket.events({"mine": 2})["mine"]
            socket.send(type="unsubscribe", subscription="mine")
            assert socket.next() == {"type": "unsubscribed", "subscription": "mine"}
    finally:
        server.stop()
    assert [e["subject"] for e in resumed] == [second, third]


def test_behind_serve_gateway_a_query_service_restart_is_relayed_and_the_client_resumes(
    tmp_path: Path, postgres_dsn: str
) -> None:
    url = asyncio.run(database_for(postgres_dsn, str(tmp_path)))
    deployment = Deployment(tmp_path / "data", "--database-url", url).start()
    try:
        with deployment.client() as client:
            first = item_of(create(client, "before"))
            with EventSocket(deployment.url) as socket:
                socket.subscribe("mine", types=["InventoryItemCreated"])
                [seen] = socket.events({"mine": 1})["mine"]
                assert seen["subject"] == first
                queries = deployment.components["queries"]
                queries.stop()
                with pytest.raises(ConnectionClosed) as closed:
                    socket.next()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # relayed
            deployment.components["queries"] = queries.restarted()
            second = item_of(create(client, "after"))
            with EventSocket(deployment.url) as socket:
                socket.subscribe("mine", types=["InventoryItemCreated"], after=seen["sequence"])
                [resumed] = socket.events({"mine": 1})["mine"]
                socket.send(type="unsubscribe", subscription="mine")
                socket.answer({"type": "unsubscribed", "subscription": "mine"})
                assert not socket.kept  # nothing more than the one event after `seen`
    finally:
        deployment.stop()
    assert resumed["subject"] == second


KEYS = {"reader": "reader-key", "writer": "writer-key"}
CONFIG = """
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]

[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["write"]
"""


@pytest.fixture(scope="module", params=["up", "processes", "envoy"])
def secured(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server | Deployment]:
    """The WebSocket behind API keys: `up`, separate processes behind `serve gateway`, and
    Envoy, each with one consumer that may read and one that may only write."""
    directory = tmp_path_factory.mktemp("secured")
    if request.param == "up":
        server: Server | Deployment = keyed_server(directory, CONFIG, KEYS)
    else:
        url = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(directory)))
        config = keyed_config(directory, CONFIG, KEYS)
        if request.param == "processes":
            server = Deployment(directory / "data", "--database-url", url, "--config", str(config))
        else:
            server = EnvoyDeployment(directory / "data", "--database-url", url, config=config,
                                     keys=KEYS)  # fmt: skip
    server.start()
    yield server
    server.stop()


def refused(base_url: str, query: str = "", **headers: str) -> Any:
    with pytest.raises(InvalidStatus) as refusal:
        EventSocket(base_url, query, headers)
    return refusal.value.response


def test_a_socket_without_a_valid_key_is_refused_with_401_and_without_read_with_403(
    secured: Server | Deployment,
) -> None:
    assert refused(secured.url).status_code == 401
    assert refused(secured.url, "api_key=wrong").status_code == 401
    assert refused(secured.url, **{"X-API-Key": "wrong"}).status_code == 401
    assert refused(secured.url, **{"X-API-Key": KEYS["writer"]}).status_code == 403
    assert refused(secured.url, f"api_key={KEYS['writer']}").status_code == 403


def test_a_reader_subscribes_with_its_key_in_a_header_or_in_api_key(
    secured: Server | Deployment,
) -> None:
    with secured.client(headers={"X-API-Key": KEYS["writer"]}) as client:
        item = item_of(create(client, "secured"))
    for socket in (EventSocket(secured.url, headers={"Authorization": f"Bearer {KEYS['reader']}"}),
                   EventSocket(secured.url, f"api_key={KEYS['reader']}")):  # fmt: skip
        with socket:
            socket.subscribe("mine", streams=[item])
            [created] = socket.events({"mine": 1})["mine"]
            assert created["subject"] == item


def test_an_sse_stream_takes_the_key_in_api_key_too_and_only_the_stream_routes_do(
    secured: Server | Deployment,
) -> None:
    """EventSource cannot set headers either: the SSE routes take `?api_key=` (read only),
    every other route still wants the key in a header."""
    with secured.client(headers={"X-API-Key": KEYS["writer"]}) as client:
        item = item_of(create(client, "sse with a key in the query"))
    reader = KEYS["reader"]
    with secured.client() as client:
        [created] = sse_events(client, f"/api/events?stream={item}&api_key={reader}", 1)
        assert created["data"]["subject"] == item
        [own] = sse_events(client, f"/api/inventory-items/{item}/events?api_key={reader}", 1)
        assert own == created
        assert client.get(f"/api/events?stream={item}").status_code == 401
        assert client.get("/api/events?api_key=wrong").status_code == 401
        assert client.get(f"/api/events?api_key={KEYS['writer']}").status_code == 403
        assert client.get(f"/api/inventory-items/{item}?api_key={reader}").status_code == 401


LIMITED = """
[gateway]
max_streams_per_consumer = 2

[[gateway.consumers]]
name = "browser"
key_sha256 = "{browser}"
scopes = ["read"]

[[gateway.consumers]]
name = "other"
key_sha256 = "{other}"
scopes = ["read"]
"""


def test_one_consumer_holds_at_most_its_streams_and_others_still_get_theirs(
    tmp_path: Path,
) -> None:
    keys = {"browser": "browser-key", "other": "other-key"}
    server = keyed_server(tmp_path, LIMITED, keys).start()
    browser, other = {"X-API-Key": keys["browser"]}, {"X-API-Key": keys["other"]}
    try:
        with (
            server.client(headers=browser) as client,
            EventSocket(server.url, headers=browser) as socket,
        ):
            socket.subscribe("first")  # the connection's own stream
            with client.stream("GET", "/api/events?heartbeat=1", timeout=20) as held:
                assert held.status_code == 200 and next(held.iter_lines()) == "retry: 2000"
                socket.send(type="subscribe", subscription="second")
                refused = socket.next()
                assert refused["subscription"] == "second"
                assert refused["problem"]["status"] == 429
                assert "2 event streams" in refused["problem"]["detail"]
                more = client.get("/api/events")
                assert more.status_code == 429 and more.headers["Retry-After"] == "5"
                with client.stream("GET", "/api/events", headers=other) as theirs:
                    assert theirs.status_code == 200  # another consumer has streams of its own
            for _ in range(20):  # the server notices the SSE client left at its next heartbeat
                socket.send(type="subscribe", subscription="second")
                if socket.next()["type"] == "subscribed":
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the stream of a closed SSE connection was never freed")
    finally:
        server.stop()
