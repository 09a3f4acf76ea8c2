"""The webhook sender against real HTTP servers on loopback: what counts as a failed attempt,
the bounds on time and on the answer read, and the refusal of private targets; deleting a
subscription leaves nothing of its function behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from nats.js.api import ConsumerConfig
from standardwebhooks import Webhook, WebhookVerificationError

from eventgate.bootstrap import System, open_broker_of
from eventgate.broker.connection import Broker
from eventgate.broker.consumer import _Attempts, consumer_functions, consumer_name
from eventgate.eventstore.model import NewEvent
from eventgate.functions.admin import admin_app
from eventgate.functions.context import Services
from eventgate.functions.model import FunctionEvent
from eventgate.functions.runner import partition_of
from eventgate.functions.worker import FunctionWorker
from eventgate.webhooks.catalog import WebhookCatalog
from eventgate.webhooks.delivery import DeliveryFailed, Sender
from eventgate.webhooks.model import new_secret, parse_new, parse_update
from eventgate.webhooks.purge import FunctionPurge
from eventgate.webhooks.store import _TABLE, SQLiteWebhookStore
from tests.nats import NatsServer
from tests.postgres import free_port
from tests.webhook_receiver import Receiver

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def target() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve one handler on a loopback port; its URL (by address, not by name)."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/hook", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/hook"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def post(url: str, sender: Sender | None = None) -> None:
    sender = sender or Sender(private=True)
    try:
        await sender.post(url, b"{}", {"Content-Type": "application/cloudevents+json"})
    finally:
        await sender.close()


async def test_only_a_2xx_is_a_delivery(target: Callable[[Handler], Awaitable[str]]) -> None:
    async def accept(request: web.Request) -> web.Response:
        return web.Response(status=202)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, text="bad")

    await post(await target(accept))
    for handler, shown in ((redirect, "HTTP 302"), (refuse, "HTTP 400: bad")):
        with pytest.raises(DeliveryFailed, match=shown):
            await post(await target(handler))


async def test_a_slow_receiver_times_out_and_a_huge_answer_is_not_read(
    target: Callable[[Handler], Awaitable[str]],
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:  # endless: a sender reading it all would time out
                await response.write(b"x" * 32768)
        return response

    with pytest.raises(DeliveryFailed, match="Timeout"):
        await post(await target(slow), Sender(timeout=0.3, private=True))
    with pytest.raises(DeliveryFailed) as failed:
        await post(await target(huge), Sender(timeout=5, private=True))
    assert str(failed.value).startswith("HTTP 500: xxx") and len(str(failed.value)) < 400


async def test_private_targets_are_refused_unless_allowed(
    target: Callable[[Handler], Awaitable[str]],
) -> None:
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(status=204)

    url = await target(record)
    with pytest.raises(DeliveryFailed, match=r"non-public address 127\.0\.0\.1"):
        await post(url, Sender(private=False))
    by_name = url.replace("127.0.0.1", "localhost")
    with pytest.raises(DeliveryFailed, match="no public address"):
        await post(by_name, Sender(private=False))
    assert hits == []
    await post(by_name, Sender(private=True))
    assert hits == ["/hook"]


async def test_the_admin_api_refuses_a_private_address(system: System) -> None:
    app = admin_app(system.functions, system.store, system.webhooks, private_targets=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        for url in ("http://10.0.0.8/hook", "http://[::1]:8080/", "http://169.254.169.254/"):
            refused = await client.post("/admin/webhooks", json={"url": url})
            assert refused.status_code == 422, url
            assert "non-public" in refused.json()["detail"]
        made = await client.post("/admin/webhooks", json={"url": "https://example.com/hook"})
        assert made.status_code == 201
    assert [s.url for s in await system.webhooks.all()] == ["https://example.com/hook"]


async def test_a_disabled_subscription_holds_an_event_whose_receiver_hangs(
    system: System, target: Callable[[Handler], Awaitable[str]]
) -> None:
    """A receiver hangs past the POST timeout in two streams while another worker disables
    the subscription: the last attempts find it disabled and the events are held, not
    dead-lettered, past the function's timeout; the worker stops it with its checkpoint
    below them, and enabling it again delivers them."""
    gate, arrived, delivered = asyncio.Event(), asyncio.Event(), []

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await gate.wait()  # past the sender's timeout until the test opens it
        delivered.append(request.headers["webhook-id"])
        return web.Response(status=204)

    made = parse_new({"url": await target(hang), "retries": 0}, await system.store.head())
    await system.webhooks.create(made)
    sender = Sender(private=True, timeout=0.3)
    services = Services(system.store, system.commands, system.functions, system.settings.data_dir)
    catalog = WebhookCatalog(system.webhooks, "urn:test", sender)
    worker = FunctionWorker([], services, heartbeat=30.0, ttl=60.0, catalog=catalog)
    running = asyncio.create_task(worker.run())  # one heartbeat: the test refreshes it
    try:
        events = [
            (await system.store.append(stream, [NewEvent("InventoryItemCreated", {})]))[0]
            for stream in ("InventoryItem-a", "InventoryItem-b")
        ]
        await asyncio.wait_for(arrived.wait(), 10)
        current = await system.webhooks.get(made.id)
        assert current is not None
        assert await system.webhooks.update(parse_update(current, {"enabled": False}))
        await until(lambda: failing(system, made.id, 2))  # both last attempts found it off
        await asyncio.sleep(sender.timeout + 3.0)  # past the function's timeout (+2 s)
        assert await system.functions.dead_letters(made.function) == []
        await worker.refresh()  # the worker sees it disabled: stopped, checkpoints saved
        checkpoints = await system.functions.load_checkpoints(made.function)
        parts = system.functions.partitions
        assert all(checkpoints[partition_of(e.stream_id, parts)] < e.position for e in events)
        found = await system.webhooks.get(made.id)
        assert found is not None
        assert await system.webhooks.update(parse_update(found, {"enabled": True}))
        gate.set()
        await worker.refresh()
        await until(lambda: ready(set(delivered) == {made.message_id(e.id) for e in events}))
        assert await system.functions.dead_letters(made.function) == []
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_rotated_secret_and_the_one_it_replaced_both_verify_during_the_grace(
    system: System, target: Callable[[Handler], Awaitable[str]]
) -> None:
    """PATCH rotates the secret (made, returned once) with a grace period: a receiver holding
    either secret verifies the deliveries; a rotation with no grace leaves only the new one
    (the grace's end in time: test_webhook_model.py)."""
    received: list[tuple[bytes, dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    url = await target(record)
    app = admin_app(system.functions, system.store, system.webhooks, private_targets=True)
    transport = httpx.ASGITransport(app=app)
    services = Services(system.store, system.commands, system.functions, system.settings.data_dir)
    catalog = WebhookCatalog(system.webhooks, "urn:test", Sender(private=True))
    worker = FunctionWorker([], services, heartbeat=0.2, ttl=5.0, catalog=catalog)
    running = asyncio.create_task(worker.run())
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            made = (await client.post("/admin/webhooks", json={"url": url})).json()
            path = f"/admin/webhooks/{made['id']}"
            both = {"rotate_secret": True, "secret": made["secret"]}
            assert (await client.patch(path, json=both)).status_code == 422
            rotated = await client.patch(path, json={"rotate_secret": True})
            assert rotated.status_code == 200, rotated.text
            shown = (await client.get(path)).json()
            old, new = made["secret"], rotated.json()["secret"]
            assert new.startswith("whsec_") and new != old and "secret" not in shown
            until = datetime.fromisoformat(shown["previous_secret_until"])
            assert until > datetime.now(UTC) + timedelta(hours=23)  # a day by default
            during, headers = await signed_by(new, system, received)
            last = new_secret()
            again = await client.patch(path, json={"secret": last, "secret_grace": 0})
            assert again.json()["secret"] == last and again.json()["previous_secret_until"] is None
            after, later = await signed_by(last, system, received)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert Webhook(old).verify(during, headers)["type"] == "InventoryItemCreated"
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(after, later)


async def test_a_webhook_store_from_before_secret_rotation_is_upgraded_in_place(
    tmp_path: Path,
) -> None:
    """A file made before rotation (no previous_secret, previous_until columns) gets them
    when opened; its subscriptions read back unchanged, with no previous secret."""
    path = tmp_path / "webhooks.sqlite"
    made = parse_new({"url": "https://example.com/hook"}, 0)
    with sqlite3.connect(path) as connection:
        connection.execute(_TABLE.format(name="webhooks"))
        s = made
        connection.execute(
            "INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.url, json.dumps(s.types), json.dumps(s.streams), s.secret, s.start,
             s.retries, s.backoff, s.disable_after, True, None, 0, s.version,
             s.created.isoformat(), s.updated.isoformat()),
        )  # fmt: skip
    connection.close()
    store = await SQLiteWebhookStore.open(path)
    try:
        assert await store.all() == [made]
    finally:
        await store.close()


async def signed_by(
    secret: str, system: System, received: list[tuple[bytes, dict[str, str]]]
) -> tuple[bytes, dict[str, str]]:
    """Append events until a delivery arrives that `secret` verifies (a worker takes a
    change of the subscription at its next heartbeat); that delivery."""
    async with asyncio.timeout(20):
        while True:
            await system.store.append("InventoryItem-r", [NewEvent("InventoryItemCreated", {})])
            await asyncio.sleep(0.2)
            for body, headers in received:
                with contextlib.suppress(WebhookVerificationError):
                    Webhook(secret).verify(body, headers)
                    return body, headers


async def ready(value: bool) -> bool:
    return value


async def failing(system: System, subscription_id: str, count: int) -> bool:
    found = await system.webhooks.get(subscription_id)
    return found is not None and found.failing >= count


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.05)


async def test_deleting_a_subscription_purges_its_function_even_after_a_late_runner(
    either: System,
) -> None:
    """Two subscriptions deliver and one dead-letters an event; DELETE purges that one's
    function at once (registry, checkpoints, dead letters), leaving the other's. A worker
    that has not seen the DELETE yet (its heartbeat is 30 s) runs it on: a late event is
    dead-lettered and its checkpoint saved after the purge. Its next refresh stops that
    runner and purges again: nothing is left, in the store or in /admin/functions."""
    system, receiver = either, await Receiver().start()
    app = admin_app(system.functions, system.store, system.webhooks, private_targets=True)
    services = Services(system.store, system.commands, system.functions, system.settings.data_dir)
    purge = FunctionPurge(system.functions)
    catalog = WebhookCatalog(system.webhooks, "urn:test", Sender(private=True), purge)
    worker = FunctionWorker([], services, heartbeat=30.0, ttl=60.0, catalog=catalog)
    transport = httpx.ASGITransport(app=app)
    running: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            made = {}
            for name in ("kept", "gone"):
                body = {"url": receiver.url(name), "retries": 0, "backoff": 0.05}
                made[name] = (await client.post("/admin/webhooks", json=body)).json()
                receiver.secrets[name] = made[name]["secret"]
            gone, kept = made["gone"]["function"], made["kept"]["function"]
            running = asyncio.create_task(worker.run())
            receiver.fail["gone"] = 1
            await append(system, "InventoryItem-1")  # gone: dead-lettered
            await append(system, "InventoryItem-2")  # gone: delivered
            await until(lambda: ready(len(receiver.unique("gone")) == 1))
            await until(lambda: stored(system, gone, letters=1, checkpointed=True))
            assert await names(client) == {gone, kept}

            deleted = await client.delete(f"/admin/webhooks/{made['gone']['id']}")
            assert deleted.status_code == 204
            assert gone not in await system.functions.names()
            assert await names(client) == {kept}

            receiver.fail["gone"] = 1  # the late runner dead-letters an event after the purge
            await append(system, "InventoryItem-3")
            await until(lambda: stored(system, gone, letters=1, checkpointed=True))

            await worker.refresh()  # it sees the subscription gone: stopped, then purged
            assert gone not in await system.functions.names()
            assert await system.functions.dead_letters(gone) == []
            assert await names(client) == {kept}
            assert kept in await system.functions.names()
    finally:
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await receiver.stop()


async def test_a_worker_sweeps_what_a_deleted_subscription_left_and_nothing_live(
    either: System,
) -> None:
    """A purge that never happened (the database away during the DELETE, a worker killed):
    a starting worker finds the state of a `webhook.` function with no subscription and
    purges it, and keeps a live subscription's and an app function's."""
    made = parse_new({"url": "https://example.com/hook"}, 0)
    await either.webhooks.create(made)
    stray, at = "webhook.0190aaaa-0000-7000-8000-000000000000", datetime.now(UTC)
    for function in (stray, made.function, "app.fn"):
        await either.functions.dead_letter(function, 0, letter_event(), ("E", "x"), 1, at)
    await either.functions.record_effect(stray, "e-1", "sent", None)
    services = Services(either.store, either.commands, either.functions, either.settings.data_dir)
    purge = FunctionPurge(either.functions)
    catalog = WebhookCatalog(either.webhooks, "urn:test", Sender(private=True), purge)
    worker = FunctionWorker([], services, heartbeat=30.0, ttl=60.0, catalog=catalog)
    running = asyncio.create_task(worker.run())
    try:
        await until(lambda: names_are(either, {made.function, "app.fn"}))
        assert [letter.function for letter in await either.functions.dead_letters()] == [
            made.function,
            "app.fn",
        ]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def append(system: System, stream: str) -> None:
    await system.store.append(stream, [NewEvent("InventoryItemCreated", {"name": stream})])


async def stored(system: System, function: str, *, letters: int, checkpointed: bool) -> bool:
    """`function` has `letters` dead letters and (if `checkpointed`) a checkpoint above 0."""
    found = await system.functions.dead_letters(function)
    checkpoints = await system.functions.load_checkpoints(function)
    return len(found) == letters and (max(checkpoints.values()) > 0) == checkpointed


async def names(client: httpx.AsyncClient) -> set[str]:
    listed = (await client.get("/admin/functions")).json()["functions"]
    return {f["name"] for f in listed}


async def names_are(system: System, expected: set[str]) -> bool:
    return await system.functions.names() == expected


def letter_event() -> FunctionEvent:
    return FunctionEvent(
        id="e-1", stream_id="InventoryItem-1", stream_version=1, position=1,
        type="InventoryItemCreated", schema_version=1, time=datetime.now(UTC), data={},
        metadata={},
    )  # fmt: skip


async def test_functions_purge_refuses_live_functions_and_purges_a_removed_one(
    either: System,
) -> None:
    """`eventgate functions purge`: an app function still declared and a webhook whose
    subscription exists are refused in one line, exit 1; a function removed from the code
    is purged (and only it); purging it again finds nothing, exit 1."""
    made = parse_new({"url": "https://example.com/hook"}, 0)
    await either.webhooks.create(made)
    at = datetime.now(UTC)
    for name in ("removed.fn", "low_stock_alert", made.function):
        await either.functions.dead_letter(name, 0, letter_event(), ("E", "x"), 1, at)
    await either.functions.record_effect("removed.fn", "e-1", "sent", None)
    data, url = either.settings.data_dir, either.settings.database_url

    for live, said in [("low_stock_alert", "still declared"), (made.function, "still exists")]:
        refused = await eventgate_cli("functions", "purge", live, data=data, url=url)
        assert refused.returncode == 1, refused.stderr
        assert said in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    purged = await eventgate_cli("functions", "purge", "removed.fn", data=data, url=url)
    assert purged.returncode == 0, purged.stderr
    assert "function removed.fn purged: 2 stored row(s)" in purged.stdout
    assert await either.functions.names() == {"low_stock_alert", made.function}
    again = await eventgate_cli("functions", "purge", "removed.fn", data=data, url=url)
    assert again.returncode == 1 and "nothing is kept" in again.stderr


async def eventgate_cli(
    *args: str, data: Path, url: str | None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", *args, "--data", str(data)]
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("EVENTGATE_DATABASE_URL", None)
    if url is not None:
        env["EVENTGATE_DATABASE_URL"] = url
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=env
    )


async def test_on_a_broker_a_sweep_and_functions_purge_delete_consumers(
    system: System, nats_server: NatsServer
) -> None:
    """JetStream consumers and attempt counts of a deleted subscription's function are
    deleted by a starting worker's sweep; a live subscription's and an app function's stay;
    `functions purge --broker` deletes the removed app function's."""
    settings = replace(system.settings, broker_url=nats_server.url)
    broker = await open_broker_of(replace(system, settings=settings), "test")
    try:
        live = parse_new({"url": "https://example.com/hook"}, 0)
        await system.webhooks.create(live)
        deleted = "webhook.0190aaaa-0000-7000-8000-000000000000"
        for function, partitions in ((deleted, 2), (live.function, 1), ("removed.fn", 1)):
            for p in range(partitions):
                await add_consumer(broker, function, p)
        await _Attempts(broker, deleted).count("e-1", 2)
        await _Attempts(broker, live.function).count("e-1", 1)
        services = Services(system.store, system.commands, system.functions, settings.data_dir)
        purge = FunctionPurge(system.functions, broker)
        catalog = WebhookCatalog(system.webhooks, "urn:test", Sender(private=True), purge)
        worker = FunctionWorker([], services, heartbeat=30.0, ttl=60.0, catalog=catalog)
        running = asyncio.create_task(worker.run())
        try:
            await until(lambda: functions_are(broker, {live.function, "removed.fn"}))
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert await _Attempts(broker, deleted).failed("e-1") == 0
        assert await _Attempts(broker, live.function).failed("e-1") == 1
        purged = await eventgate_cli("functions", "purge", "removed.fn", "--broker",
                                     nats_server.url, data=settings.data_dir, url=None)  # fmt: skip
        assert purged.returncode == 0, purged.stderr
        assert "0 stored row(s), 1 JetStream consumer(s)" in purged.stdout
        assert await consumer_functions(broker) == {live.function}
    finally:
        await broker.close()


async def add_consumer(broker: Broker, function: str, partition: int) -> None:
    """A consumer as a runner of `function` makes it (JetStreamRunner._subscribe)."""
    await broker.js.add_consumer(
        broker.layout.stream,
        ConsumerConfig(
            durable_name=consumer_name(function, partition),
            description=f"eventgate function {function}, partition {partition}",
            filter_subject=broker.layout.partition_subjects(partition),
        ),
    )


async def functions_are(broker: Broker, expected: set[str]) -> bool:
    return await consumer_functions(broker) == expected
