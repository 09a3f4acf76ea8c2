"""Webhooks through a real `eventgate up` (SQLite files, PostgreSQL, events on NATS JetStream)
and through separate processes on PostgreSQL (two `serve functions`, behind `serve gateway`
and behind Envoy): subscriptions made over the admin API while it runs, each delivery's
signature checked by the `standardwebhooks` library in a real HTTP receiver, per-stream
order, retries, dead letters replayed with `eventgate dlq`, disabling after repeated failures
and resuming, and restarts of both ends without loss (every event's webhook-id arrives) or
duplicates (after de-duplication by it)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import nats
from tests.conftest import installed
from tests.e2e.server import (
    ROOT,
    Deployment,
    EnvoyDeployment,
    Server,
    keyed_config,
    keyed_server,
)
from tests.nats import NatsServer, nats_binary
from tests.postgres import database_for
from tests.webhook_receiver import Receiver

KEYS = {"writer": "writer-key", "admin": "admin-key"}
CONFIG = """
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]
[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
"""
Served = Server | Deployment
ALLOW_LOOPBACK = {"EVENTGATE_WEBHOOKS_ALLOW_PRIVATE": "true"}
FAST = {"retries": 2, "backoff": 0.05}


def deployment(directory: Path, request: pytest.FixtureRequest, broker: str = "") -> Served:
    """`up` on SQLite files, on PostgreSQL, with the events on NATS JetStream (`broker`, else
    the session's server), or separate processes on PostgreSQL."""
    env = dict(ALLOW_LOOPBACK)
    if request.param in ("processes", "envoy"):  # two `serve functions` share the partitions
        dsn = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(directory)))
        config = keyed_config(directory, CONFIG, KEYS)
        env["EVENTGATE_DATABASE_URL"] = dsn  # the CLI calls below inherit it
        if request.param == "envoy":  # two command services, either one answering /admin
            return EnvoyDeployment(directory / "data", env=env, config=config, keys=KEYS)
        return Deployment(directory / "data", "--config", str(config), env=env)
    if request.param in ("postgres",):
        dsn = asyncio.run(database_for(request.getfixturevalue("postgres_dsn"), str(directory)))
        env["EVENTGATE_DATABASE_URL"] = dsn
    if request.param == "nats":
        env["EVENTGATE_BROKER_URL"] = broker or request.getfixturevalue("nats_server").url
    return keyed_server(directory, CONFIG, KEYS, env=env)


@pytest.fixture(scope="module", params=["sqlite", "postgres", "nats", "processes", "envoy"])
def up(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    server = deployment(tmp_path_factory.mktemp("webhooks"), request).start()
    if isinstance(server, Deployment):
        server.components["functions-2"] = server.component("functions").start()
    yield server
    server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


def as_(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def admin(server: Served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers=as_("admin"), timeout=10)


async def subscribe(server: Served, receiver: Receiver, name: str, **fields: Any) -> dict[str, Any]:
    async with admin(server) as client:
        made = await client.post("/admin/webhooks", json={"url": receiver.url(name), **fields})
    assert made.status_code == 201, made.text
    receiver.secrets[name] = made.json()["secret"]
    return dict(made.json())


async def write(server: Served, *items: str, moves: int = 0) -> list[str]:
    """Create `items`, each checked in and out `moves` times; their URLs."""
    urls = []
    async with httpx.AsyncClient(base_url=server.url, headers=as_("writer"), timeout=10) as c:
        for name in items:
            created = await c.post("/api/inventory-items", json={"name": name})
            assert created.status_code == 202, created.text
            urls.append(created.headers["Location"])
        for _ in range(moves):
            for url in urls:
                for model in ("CheckInItemsToInventory", "RemoveItemsFromInventory"):
                    moved = await c.post(url, content=b'{"count": 1}', headers={
                        "Content-Type": f"application/json; domain-model={model}"})  # fmt: skip
                    assert moved.status_code == 202, moved.text
    return urls


async def eventually(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def stored(server: Served, after: int, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    found = await run_cli(server, "events", "--json")
    return [e for e in found if e["position"] > after and (not types or e["type"] in types)]


async def run_cli(server: Served, *args: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "eventgate.cli", *args, "--data", str(server.data)]
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=server.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def in_stream_order(deliveries: list[dict[str, Any]]) -> bool:
    """Each stream's first deliveries come in its order (streamversion 1, 2, ...)."""
    versions: dict[str, list[int]] = {}
    for d in deliveries:
        versions.setdefault(d["event"]["subject"], []).append(d["event"]["streamversion"])
    return all(v == sorted(v) for v in versions.values())


# -- the admin API ---------------------------------------------------------------------


async def test_bad_subscriptions_are_refused_with_problem_details(up: Served) -> None:
    async with admin(up) as client:
        for body, status in [
            ({"url": "ftp://example.com/hook"}, 422),
            ({"url": "http://"}, 422),
            ({"url": "https://u:p@example.com/"}, 422),
            ({"types": ["*"]}, 422),
            ({"url": "https://example.com/", "types": []}, 422),
            ({"url": "https://example.com/", "types": "Inventory*"}, 422),
            ({"url": "https://example.com/", "secret": "not-a-secret"}, 422),
            ({"url": "https://example.com/", "start": "yesterday"}, 422),
            ({"url": "https://example.com/", "retries": 1000}, 422),
            ({"url": "https://example.com/", "colour": "red"}, 422),
            ([], 422),
        ]:
            answer = await client.post("/admin/webhooks", json=body)
            assert answer.status_code == status, (body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        broken = await client.post(
            "/admin/webhooks", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 400
        for method in ("GET", "PATCH", "DELETE"):
            missing = await client.request(method, "/admin/webhooks/nope", json={})
            assert missing.status_code == 404, method
    async with httpx.AsyncClient(base_url=up.url, headers=as_("writer")) as writer:
        refused = await writer.get("/admin/webhooks")
        assert refused.status_code == 403  # the admin scope only


async def test_the_secret_is_shown_once_and_updates_apply(up: Served, receiver: Receiver) -> None:
    made = await subscribe(up, receiver, "shown", types=["Nothing"])
    assert made["secret"].startswith("whsec_") and made["enabled"] is True
    async with admin(up) as client:
        listed = (await client.get("/admin/webhooks")).json()["webhooks"]
        shown = (await client.get(f"/admin/webhooks/{made['id']}")).json()
        assert [w["id"] for w in listed if w["id"] == made["id"]] == [made["id"]]
        assert all("secret" not in w for w in listed) and "secret" not in shown
        changed = await client.patch(
            f"/admin/webhooks/{made['id']}", json={"types": ["InventoryItem*"], "enabled": False}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["types"] == ["InventoryItem*"] and not changed.json()["enabled"]
        assert changed.json()["disabled_reason"] == "disabled over the admin API"
        assert (await client.delete(f"/admin/webhooks/{made['id']}")).status_code == 204
        assert (await client.get(f"/admin/webhooks/{made['id']}")).status_code == 404


# -- deliveries ------------------------------------------------------------------------


async def test_a_subscription_made_while_up_runs_gets_every_matching_event_signed_in_order(
    up: Served, receiver: Receiver
) -> None:
    before = await write(up, "old")  # before the subscription: not delivered ("end")
    made = await subscribe(up, receiver, "live", types=["Items*"])
    receiver.fail["live"] = 3  # the first deliveries fail and are retried
    await write(up, "a", "b", "c", moves=3)
    wanted = await stored(
        up, made["start"], ("ItemsCheckedInToInventory", "ItemsRemovedFromInventory")
    )
    assert len(wanted) == 18
    assert await eventually(lambda: len(receiver.unique("live")) >= len(wanted))
    await asyncio.sleep(0.5)  # nothing else arrives
    got = receiver.unique("live")
    assert sorted(d["webhook-id"] for d in got) == sorted(message_id(made, e) for e in wanted)
    assert not receiver.rejected
    assert receiver.content_types == {"application/cloudevents+json"}
    assert in_stream_order(got)
    first = got[0]["event"]
    assert first["specversion"] == "1.0" and first["id"] in {e["id"] for e in wanted}
    assert got[0]["webhook-id"] == f"msg_{made['id']}_{first['id']}"
    assert first["source"].startswith("urn:eventgate:")
    assert before[0].rsplit("/", 1)[1] not in {d["event"]["subject"] for d in got}


async def test_from_the_beginning_and_a_stream_filter(up: Served, receiver: Receiver) -> None:
    await write(up, "filtered", moves=1)
    stream = next(
        e["stream_id"] for e in await stored(up, 0) if e["data"].get("name") == "filtered"
    )
    made = await subscribe(up, receiver, "history", start="beginning", streams=[stream])
    wanted = [e for e in await stored(up, 0) if e["stream_id"] == stream]
    assert await eventually(lambda: len(receiver.unique("history")) >= len(wanted))
    got = [d["webhook-id"] for d in receiver.unique("history")]
    assert got == [message_id(made, e) for e in wanted]


async def test_a_changed_url_takes_the_deliveries_from_where_the_old_one_stopped(
    up: Served, receiver: Receiver
) -> None:
    made = await subscribe(up, receiver, "old", types=["InventoryItemCreated"])
    receiver.secrets["new"] = made["secret"]
    await write(up, "first", "second")
    assert await eventually(lambda: len(receiver.unique("old")) >= 2)
    async with admin(up) as client:
        moved = await client.patch(
            f"/admin/webhooks/{made['id']}", json={"url": receiver.url("new")}
        )
        assert moved.status_code == 200 and moved.json()["url"] == receiver.url("new")
    for n in range(60):  # until a delivery reaches the new URL (a worker's next heartbeat)
        await write(up, f"later-{n}")
        if await eventually(lambda: receiver.unique("new"), within=0.5):
            break
    wanted = await stored(up, made["start"], ("InventoryItemCreated",))
    assert await eventually(
        lambda: len(receiver.unique("old") + receiver.unique("new")) >= len(wanted)
    )
    await asyncio.sleep(0.5)  # nothing else arrives
    old, new = receiver.unique("old"), receiver.unique("new")
    assert new and {d["event"]["data"]["name"] for d in old} >= {"first", "second"}
    assert sorted(d["webhook-id"] for d in old + new) == sorted(message_id(made, e) for e in wanted)


async def test_a_dead_letter_is_replayed_with_the_dlq_command(
    up: Served, receiver: Receiver
) -> None:
    made = await subscribe(up, receiver, "dead", types=["InventoryItemCreated"], **FAST)
    receiver.fail["dead"] = 3  # the first attempt and both retries
    await write(up, "doomed")
    function = made["function"]

    async def letters() -> list[dict[str, Any]]:
        return await run_cli(up, "dlq", "list", "--json", "--function", function)

    [letter] = await eventually_async(letters)
    assert letter["attempts"] == 3 and "HTTP 500" in letter["error_message"]
    async with admin(up) as client:
        shown = (await client.get(f"/admin/webhooks/{made['id']}")).json()
    assert shown["delivery"]["dead_letters"] == 1 and shown["failing"] == 1
    assert receiver.unique("dead") == []
    await run_cli(up, "dlq", "replay", str(letter["id"]))
    assert await eventually(lambda: receiver.unique("dead"))
    [delivered] = receiver.unique("dead")
    assert delivered["webhook-id"] == message_id(made, letter["event"])
    assert await eventually_async(lambda: _empty(letters))


async def test_repeated_failures_disable_and_enabling_resumes_without_loss(
    up: Served, receiver: Receiver
) -> None:
    made = await subscribe(up, receiver, "flaky", types=["InventoryItemCreated"],
                           retries=0, backoff=0.05, disable_after=2)  # fmt: skip
    receiver.fail["flaky"] = -1
    await write(up, "one", "two")
    async with admin(up) as client:

        async def disabled() -> dict[str, Any] | None:
            shown = (await client.get(f"/admin/webhooks/{made['id']}")).json()
            return None if shown["enabled"] else dict(shown)

        shown = await eventually_async(disabled)
        assert shown is not None, "not disabled after two dead letters in a row"
        assert shown["disabled_reason"].startswith("2 events in a row dead-lettered")
        await write(up, "three", "four")  # while disabled: waits, not lost
        await asyncio.sleep(1.0)
        assert receiver.received["flaky"] == []
        receiver.fail["flaky"] = 0
        enabled = await client.patch(f"/admin/webhooks/{made['id']}", json={"enabled": True})
        assert enabled.status_code == 200 and enabled.json()["failing"] == 0
    letters = await run_cli(up, "dlq", "list", "--json", "--function", made["function"])
    assert len(letters) == 2  # the two that disabled it; the later two were not attempted
    await run_cli(up, "dlq", "replay", "--all", "--function", made["function"])
    wanted = await stored(up, made["start"], ("InventoryItemCreated",))
    assert len(wanted) == 4
    assert await eventually(lambda: len(receiver.unique("flaky")) >= 4)
    assert {d["webhook-id"] for d in receiver.unique("flaky")} == {
        message_id(made, e) for e in wanted
    }


async def test_two_subscriptions_get_one_event_under_two_webhook_ids(
    up: Served, receiver: Receiver
) -> None:
    """A receiver of two subscriptions that de-duplicates by webhook-id keeps both
    deliveries of an event; each carries the event's own id in the CloudEvent."""
    first = await subscribe(up, receiver, "one", types=["InventoryItemCreated"])
    second = await subscribe(up, receiver, "two", types=["InventoryItemCreated"])
    await write(up, "twice")
    assert await eventually(lambda: receiver.unique("one") and receiver.unique("two"))
    [one], [two] = receiver.unique("one"), receiver.unique("two")
    assert one["event"]["id"] == two["event"]["id"]
    assert one["webhook-id"] == message_id(first, one["event"])
    assert two["webhook-id"] == message_id(second, two["event"])
    assert one["webhook-id"] != two["webhook-id"]


async def test_a_rotated_secret_lets_the_receiver_switch_without_losing_a_delivery(
    up: Served, receiver: Receiver
) -> None:
    """After PATCH rotates the secret, deliveries verify with the old secret and with the
    new one (both signatures, for the grace period): the receiver switches at leisure."""
    made = await subscribe(up, receiver, "rotating", types=["InventoryItemCreated"])
    async with admin(up) as client:
        rotated = await client.patch(f"/admin/webhooks/{made['id']}", json={"rotate_secret": True})
        assert rotated.status_code == 200, rotated.text
        shown = (await client.get(f"/admin/webhooks/{made['id']}")).json()
    new = rotated.json()["secret"]
    assert new != made["secret"] and "secret" not in shown and shown["previous_secret_until"]
    await write(up, "still-old")  # the receiver still verifies with the old secret
    assert await eventually(lambda: len(receiver.unique("rotating")) == 1)
    receiver.secrets["rotating"] = new
    await write(up, "now-new")
    assert await eventually(lambda: len(receiver.unique("rotating")) == 2)
    names = [d["event"]["data"]["name"] for d in receiver.unique("rotating")]
    assert names == ["still-old", "now-new"]


async def test_deleting_a_subscription_leaves_nothing_of_it_behind(
    up: Served, receiver: Receiver
) -> None:
    """A subscription delivers one event and dead-letters another, then is deleted: its
    function is gone from /admin/functions, `functions list` and the dead letters, and on
    NATS its JetStream consumers are deleted by the workers; it stays so while events go on
    (no runner still stopping makes any of it again)."""
    made = await subscribe(up, receiver, "deleted", types=["InventoryItemCreated"], **FAST)
    function = made["function"]
    receiver.fail["deleted"] = 3  # the first attempt and both retries: a dead letter
    await write(up, "lost")
    await eventually_async(lambda: run_cli(up, "dlq", "list", "--json", "--function", function))
    await write(up, "delivered")
    assert await eventually(lambda: receiver.unique("deleted"))
    broker = up.env.get("EVENTGATE_BROKER_URL")
    if broker:
        assert await eventually_async(lambda: consumers_of(broker, function))
    async with admin(up) as client:
        assert (await client.delete(f"/admin/webhooks/{made['id']}")).status_code == 204
        assert (await client.get(f"/admin/webhooks/{made['id']}")).status_code == 404

        async def left() -> list[str]:
            listed = (await client.get("/admin/functions")).json()["functions"]
            kept = [f["name"] for f in listed if f["name"] == function]
            kept += [str(f) for f in await run_cli(up, "dlq", "list", "--json", "--function",
                                                   function)]  # fmt: skip
            return kept + (await consumers_of(broker, function) if broker else [])

        assert await eventually_async(lambda: _empty(left))
        await write(up, "after")  # a runner that had not stopped yet would take it
        await asyncio.sleep(2.0)  # two heartbeats: every worker has stopped its runner
        assert await left() == []
    [listed] = await run_cli(up, "functions", "list", "--json")
    assert function not in {f["name"] for f in listed["functions"]}


async def consumers_of(url: str, function: str) -> list[str]:
    """The JetStream consumers of `function` on any stream of the NATS server at `url`."""
    client = await nats.connect(url)
    try:
        manager = client.jsm()
        return [
            consumer.name
            for stream in await manager.streams_info()
            for consumer in await manager.consumers_info(stream.config.name)
            if (consumer.config.description or "").startswith(f"eventgate function {function},")
        ]
    finally:
        await client.close()


def message_id(made: dict[str, Any], event: dict[str, Any]) -> str:
    """The webhook-id of `event`'s deliveries to the subscription `made`."""
    return f"msg_{made['id']}_{event['id']}"


async def eventually_async(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


async def _empty(letters: Callable[[], Any]) -> bool:
    return not await letters()


# -- restarts --------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres", "nats"])
def fresh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """A deployment of its own; on NATS with a server of its own too, since the app's
    JetStream stream already holds the events of the module's deployment."""
    broker = None
    if request.param == "nats":
        broker = NatsServer(installed(nats_binary(), "nats-server")).start()
    server = deployment(tmp_path, request, broker.url if broker else "")
    assert isinstance(server, Server)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()
    if broker is not None:
        broker.remove()


async def test_killed_server_and_receiver_restarted_lose_nothing_and_duplicate_nothing(
    fresh: Server,
) -> None:
    """Both ends stopped while events flow (the server by kill -9): afterwards every
    matching event's webhook-id has arrived (no loss) and, de-duplicated by it, each
    once; the receiver keeps what it recorded across its restart, as its database would."""
    await asyncio.to_thread(fresh.start)
    receiver = await Receiver().start()
    made = await subscribe(fresh, receiver, "kept", types=["Items*"], retries=20, backoff=0.05)
    writing = asyncio.create_task(write(fresh, *(f"r{i}" for i in range(4)), moves=5))
    await eventually(lambda: len(receiver.received["kept"]) >= 5)
    await receiver.stop()  # the receiver goes away: deliveries fail and are retried
    await writing
    await asyncio.sleep(0.3)
    await asyncio.to_thread(fresh.stop, signal.SIGKILL)  # the server too, mid-delivery
    await receiver.start()  # on its port again, with what it recorded (its de-dup store)
    await asyncio.to_thread(fresh.start)
    try:
        wanted = await stored(fresh, made["start"], ("ItemsCheckedInToInventory",
                                                      "ItemsRemovedFromInventory"))  # fmt: skip
        assert len(wanted) == 40
        assert await eventually(lambda: len(receiver.unique("kept")) >= 40, within=60)
        await asyncio.sleep(0.5)
        ids = [d["webhook-id"] for d in receiver.unique("kept")]
        assert sorted(ids) == sorted(message_id(made, e) for e in wanted)
        assert not receiver.rejected
    finally:
        await receiver.stop()
