"""kill -9 of each kind of process under load, the others running on: every 202 is in the log
and in the read model after the restart, no projection applies an event twice, and no
function misses an event. The components run as separate `eventgate serve` processes on
PostgreSQL, behind `serve gateway`, with two `serve projections` processes sharing leases."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from tests.e2e.server import Deployment
from tests.postgres import database_for

pytestmark = pytest.mark.slow

CHECK_IN = {"Content-Type": "application/json; domain-model=CheckInItemsToInventory"}


class Load:
    """Clients creating items and checking stock in through the gateway, reading each back;
    what got a 202 is remembered (a refused or failed request is simply not counted)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names: dict[str, str] = {}
        self.stock: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        """Stock of check-ins whose outcome the client never learned (a 502 or a broken
        connection while the command service died: applied or not, both are correct)."""
        self.accepted = 0
        self.failed = 0
        self.stopping = asyncio.Event()

    async def run(self, clients: int = 8) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(clients)))

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not self.stopping.is_set():
            i += 1
            try:
                created = await client.post("/api/inventory-items", json={"name": f"k-{n}-{i}"})
                if created.status_code != 202:
                    self.failed += 1
                    await asyncio.sleep(0.05)
                    continue
                item = created.json()["id"]
                self.names[item] = f"k-{n}-{i}"
                self.accepted += 1
                url = f"/api/inventory-items/{item}"
                for count in (2, 3):
                    try:
                        added = await client.post(url, json={"count": count}, headers=CHECK_IN)
                    except httpx.HTTPError:
                        self.unknown[item] += count
                        raise
                    if added.status_code == 202:
                        self.stock[item] += count
                        self.accepted += 1
                    elif added.status_code in (502, 504):
                        self.unknown[item] += count
                token = {"Consistency-Token": created.headers["Consistency-Token"]}
                await client.get(url, headers=token)  # load on the query side too
            except httpx.HTTPError:
                self.failed += 1
                await asyncio.sleep(0.05)


async def every_accepted_item_reads_right(url: str, load: Load) -> None:
    """Every item whose create was answered 202 is in the read model (read after a marker
    command's token) with its name, and its stock counts each acknowledged check-in once
    (twice would show) and unanswered ones at most once."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        marker = await client.post("/api/inventory-items", json={"name": "marker"})
        assert marker.status_code == 202
        token = {"Consistency-Token": marker.headers["Consistency-Token"]}
        for item, expected in load.names.items():
            got = await client.get(f"/api/inventory-items/{item}", headers=token)
            assert got.status_code == 200, (item, got.text)
            assert got.headers["Consistency-Status"] == "current"
            body = got.json()
            assert body["name"] == expected
            low, high = load.stock[item], load.stock[item] + load.unknown[item]
            assert low <= body["currentCount"] <= high, (item, body, low, high)


async def accepted_grows(load: Load, by: int) -> None:
    target = load.accepted + by
    async with asyncio.timeout(60):
        while load.accepted < target:  # noqa: ASYNC110 - counted by the load's clients
            await asyncio.sleep(0.05)


def lease_holder_pid(dsn: str) -> int:
    async def find() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            for _ in range(100):
                holder = await connection.fetchval("SELECT holder FROM eventgate_leases LIMIT 1")
                if holder is not None:
                    return int(holder.split(":")[1])
                await asyncio.sleep(0.1)
        finally:
            await connection.close()
        raise AssertionError("no process holds a projection lease")

    return asyncio.run(find())


@pytest.mark.parametrize("kind", ["commands", "queries", "projections", "functions"])
async def test_kill_9_of_one_process_loses_nothing(
    kind: str, tmp_path: Path, postgres_dsn: str
) -> None:
    dsn = await database_for(postgres_dsn, f"kill-{kind}", "k")
    deployment = await asyncio.to_thread(Deployment(tmp_path, "--database-url", dsn).start, 2)
    try:
        load = Load(deployment.url)
        firing = asyncio.create_task(load.run())
        await accepted_grows(load, 150)

        name = "projections-0" if kind == "projections" else kind
        victim = deployment.components[name]
        assert victim.process is not None
        pid = victim.process.pid
        if kind == "projections":  # the process that runs the projections right now
            pid = await asyncio.to_thread(lease_holder_pid, dsn)
            name = next(n for n, c in deployment.components.items()
                        if c.process is not None and c.process.pid == pid)  # fmt: skip
            victim = deployment.components[name]
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(victim.stop, signal.SIGKILL)
        if kind == "commands":  # nothing is accepted meanwhile: the gateway answers 502s
            failed = load.failed
            async with asyncio.timeout(30):
                while load.failed < failed + 20:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        else:
            await accepted_grows(load, 150)  # the others serve on
        if kind == "projections":  # the other process took the leases over meanwhile
            await read_model_follows(deployment.url)
        deployment.components[name] = await asyncio.to_thread(victim.restarted)
        await accepted_grows(load, 150)
        load.stopping.set()
        await firing

        await every_accepted_item_reads_right(deployment.url, load)
        await functions_saw_every_event(dsn, tmp_path / "audit.jsonl")
    finally:
        for component, (code, _, stderr) in (await asyncio.to_thread(deployment.stop_all)).items():
            print(f"--- {component} exited {code}\n{stderr[-3000:]}")  # shown when it fails
            (tmp_path / f"{component}.log").write_text(stderr)


async def read_model_follows(url: str) -> None:
    """A new item becomes visible (Consistency-Status current) within the lease's TTL."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client, asyncio.timeout(20):
        created = await client.post("/api/inventory-items", json={"name": "takeover"})
        token = {"Consistency-Token": created.headers["Consistency-Token"]}
        while True:
            got = await client.get(created.headers["Location"], headers=token)
            if got.headers.get("Consistency-Status") == "current":
                return


async def functions_saw_every_event(dsn: str, audit: Path) -> None:
    """The audit function wrote a line for every event in the log (at least once)."""
    connection = await asyncpg.connect(dsn)
    try:
        logged = {row["event_id"] for row in await connection.fetch(
            "SELECT event_id FROM eventgate_events")}  # fmt: skip
    finally:
        await connection.close()
    seen: set[str] = set()
    async with asyncio.timeout(60):
        while not logged <= seen:
            await asyncio.sleep(0.2)
            seen = await asyncio.to_thread(audited, audit)
    assert logged <= seen


def audited(audit: Path) -> set[str]:
    """The event ids of the audit file's lines (none of a line a kill -9 cut short)."""
    if not audit.exists():
        return set()
    seen = set()
    for line in audit.read_bytes().splitlines():
        try:
            seen.add(orjson.loads(line)["id"])
        except orjson.JSONDecodeError:
            continue
    return seen
