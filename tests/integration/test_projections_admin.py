"""The read models over the admin API, on SQLite files and on PostgreSQL: checkpoint, lag
and parked streams as `eventgate projections status` says them, and a skip of a parked
stream that the running upsert service then takes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from eventgate.bootstrap import System
from eventgate.eventstore import NewEvent
from eventgate.examples.inventory.domain import CreateInventoryItem
from eventgate.functions.admin import admin_app
from eventgate.projections.admin import ProjectionAdmin
from tests.integration.test_functions import until


@pytest.fixture
def system(either: System) -> System:
    """Every test here on SQLite and on PostgreSQL (tests/conftest.py: either)."""
    return either


@pytest.fixture
async def admin(system: System) -> AsyncIterator[httpx.AsyncClient]:
    projections = ProjectionAdmin(system.upsert, system.read_store, system.store)
    app = admin_app(system.functions, system.store, system.webhooks, projections=projections)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        yield client


async def test_each_projection_says_its_checkpoint_lag_and_parked_streams(
    system: System, admin: httpx.AsyncClient
) -> None:
    await system.commands.execute(CreateInventoryItem("i-1", "bolts"))
    second = await system.commands.execute(CreateInventoryItem("i-2", "nuts"))
    before = (await admin.get("/admin/projections")).json()
    assert before["head"] == second.events[-1].position  # PostgreSQL's positions have gaps
    names = sorted(system.read_store.projections)
    assert sorted(p["name"] for p in before["projections"]) == names
    assert all(p["checkpoint"] == 0 and p["lag"] == 2 for p in before["projections"])

    poison = NewEvent("InventoryItemRenamed", {"id": "i-1", "newName": None})
    [stored] = await system.store.append("i-1", [poison])
    upsert = asyncio.create_task(system.upsert.run())
    try:
        await until(lambda: _parked_in_every(system))
        after = (await admin.get("/admin/projections")).json()
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)
    assert after["head"] == stored.position
    for row in after["projections"]:
        assert (row["checkpoint"], row["lag"]) == (stored.position, 0)
        [parked] = row["parked"]
        assert (parked["stream"], parked["position"]) == ("i-1", stored.position)
        assert parked["type"] == "InventoryItemRenamed" and parked["error"]


async def test_a_skip_asked_over_the_admin_api_unparks_the_stream(
    system: System, admin: httpx.AsyncClient
) -> None:
    await system.commands.execute(CreateInventoryItem("i-3", "washers"))
    await system.store.append("i-3", [NewEvent("InventoryItemRenamed", {"id": "i-3"})])
    upsert = asyncio.create_task(system.upsert.run())
    try:
        await until(lambda: _parked_in_every(system))
        name = sorted(system.read_store.projections)[0]
        asked = await admin.post(f"/admin/projections/{name}/skip", params={"stream": "i-3"})
        assert asked.status_code == 202
        assert asked.json() == {"requested": 1, "kind": "skip"}
        await until(lambda: _parked_streams_of(system, name, 0))
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)
    others = len(system.read_store.projections) - 1
    assert len(await system.read_store.parked_streams()) == others  # only the one asked


async def test_requests_the_read_store_cannot_take_are_refused_with_a_problem(
    system: System, admin: httpx.AsyncClient
) -> None:
    name = sorted(system.read_store.projections)[0]
    unknown = await admin.post("/admin/projections/nope/retry")
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert unknown.headers["content-type"] == "application/problem+json"
    nothing = await admin.post(f"/admin/projections/{name}/retry", params={"stream": "i-9"})
    assert nothing.status_code == 404 and "no parked stream 'i-9'" in nothing.json()["detail"]
    no_stream = await admin.post(f"/admin/projections/{name}/skip")
    assert no_stream.status_code == 422
    too_long = await admin.post(f"/admin/projections/{name}/retry", params={"stream": "x" * 201})
    assert too_long.status_code == 422
    assert (await admin.delete("/admin/projections")).status_code == 405


async def _parked_in_every(system: System) -> bool:
    return len(await system.read_store.parked_streams()) == len(system.read_store.projections)


async def _parked_streams_of(system: System, name: str, count: int) -> bool:
    parked = await system.read_store.parked_streams()
    return sum(p.projection == name for p in parked) == count
