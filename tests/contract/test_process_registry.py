"""The process registry contract (heartbeats, fair per-name leases), on a SQLite file and
on a real PostgreSQL, and the membership that keeps one process registered while it runs."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventgate.errors import ConfigError
from eventgate.processes import (
    Membership,
    PostgresProcessRegistry,
    ProcessRecord,
    ProcessRegistry,
    SQLiteProcessRegistry,
)
from tests.postgres import database_for

HOST = socket.gethostname()
LONG = 60.0
"""A time-to-live no test outlasts: nothing expires unless a test means it to."""
SHORT = 0.2
"""A time-to-live a test waits out on purpose."""
NAMES = ["alpha", "beta", "gamma"]

Opener = Callable[[], Awaitable[ProcessRegistry]]


@pytest.fixture(params=["sqlite", "postgres"])
async def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens registries on one storage: each is what one process would open."""
    if request.param == "sqlite":
        path = tmp_path / "processes.sqlite"

        async def open_one() -> ProcessRegistry:
            return await SQLiteProcessRegistry.open(path)
    else:
        dsn = await database_for(request.getfixturevalue("postgres_dsn"), str(tmp_path), "p")

        async def open_one() -> ProcessRegistry:
            return await PostgresProcessRegistry.open(dsn)

    opened: list[ProcessRegistry] = []

    async def opener() -> ProcessRegistry:
        registry = await open_one()
        opened.append(registry)
        return registry

    yield opener
    for registry in opened:
        await registry.close()


@pytest.fixture
async def registry(open_registry: Opener) -> ProcessRegistry:
    return await open_registry()


def record(
    id: str,
    roles: tuple[str, ...] = ("projections",),
    *,
    pid: int | None = None,
    host: str = HOST,
    address: str = "",
) -> ProcessRecord:
    """What a process sends with its beat (the registry sets `started` and `heartbeat`)."""
    return ProcessRecord(id, roles, host, os.getpid() if pid is None else pid, address, 0.0, 0.0)


async def listed(registry: ProcessRegistry) -> dict[str, ProcessRecord]:
    return {p.id: p for p in await registry.processes()}


async def leases(registry: ProcessRegistry) -> dict[str, tuple[str, ...]]:
    return {p.id: p.leases for p in await registry.processes()}


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Return once `check()` holds; fail if it does not within `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    return child.pid


# -- heartbeats -------------------------------------------------------------------------


async def test_a_beat_registers_the_process(registry: ProcessRegistry) -> None:
    assert await registry.processes() == []
    await registry.beat(record("p1", ("queries", "projections"), address="10.0.0.1:8001"), LONG)
    [found] = await registry.processes()
    assert (found.id, found.roles, found.host, found.pid, found.address) == (
        "p1", ("queries", "projections"), HOST, os.getpid(), "10.0.0.1:8001",
    )  # fmt: skip
    assert 0 < found.started <= found.heartbeat < found.started + 1
    assert found.leases == ()
    assert found.to_json()["roles"] == ["queries", "projections"]


async def test_a_second_beat_keeps_started_and_moves_the_heartbeat(
    registry: ProcessRegistry,
) -> None:
    await registry.beat(record("p1", address="first:1"), LONG)
    [first] = await registry.processes()
    await asyncio.sleep(0.02)  # the clock must move for the heartbeat to move
    await registry.beat(record("p1", address="second:2"), LONG)
    [second] = await registry.processes()
    assert second.started == first.started
    assert second.heartbeat > first.heartbeat
    assert second.address == "second:2"


async def test_processes_are_listed_oldest_first(registry: ProcessRegistry) -> None:
    for id in ["p-c", "p-a", "p-b"]:
        await registry.beat(record(id), LONG)
        await asyncio.sleep(0.01)
    assert [p.id for p in await registry.processes()] == ["p-c", "p-a", "p-b"]


async def test_a_quiet_process_is_dropped_with_its_leases(registry: ProcessRegistry) -> None:
    await registry.beat(record("quiet"), LONG)
    assert (await registry.claim("quiet", NAMES, "projections", LONG)).held == set(NAMES)
    await asyncio.sleep(SHORT + 0.1)  # "quiet" beats no more
    await registry.beat(record("p2"), SHORT)
    assert await leases(registry) == {"p2": ()}
    claim = await registry.claim("p2", NAMES, "projections", LONG)
    assert claim.held == set(NAMES) and claim.fair_share == 3


async def test_a_process_that_keeps_beating_is_not_dropped(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2"), LONG)
    await registry.beat(record("p1"), LONG)
    assert set(await listed(registry)) == {"p1", "p2"}


async def test_a_process_whose_pid_is_gone_is_dropped_at_once(registry: ProcessRegistry) -> None:
    await registry.beat(record("gone", pid=dead_pid()), LONG)
    await registry.claim("gone", NAMES, "projections", LONG)
    assert set(await listed(registry)) == {"gone"}  # its own beat does not judge it
    await registry.beat(record("p2"), LONG)  # well within the ttl
    assert await leases(registry) == {"p2": ()}


async def test_each_registry_sees_the_others_processes(open_registry: Opener) -> None:
    first, second = await open_registry(), await open_registry()
    await first.beat(record("p1"), LONG)
    await second.beat(record("p2"), LONG)
    await first.claim("p1", ["alpha"], "projections", LONG)
    assert await leases(second) == {"p1": ("alpha",), "p2": ()}
    assert await leases(first) == await leases(second)


# -- leases -----------------------------------------------------------------------------


async def test_the_only_process_of_a_role_gets_every_name(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("q1", ("queries", "commands")), LONG)  # not of the role
    claim = await registry.claim("p1", NAMES, "projections", LONG)
    assert claim.held == set(NAMES) and claim.fair_share == 3
    assert await leases(registry) == {"p1": ("alpha", "beta", "gamma"), "q1": ()}
    again = await registry.claim("p1", NAMES, "projections", LONG)  # a renewal
    assert again.held == set(NAMES) and again.fair_share == 3


async def test_two_processes_share_the_names_fairly(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2", ("queries", "projections")), LONG)
    first = await registry.claim("p1", NAMES, "projections", LONG)
    assert first.fair_share == 2 and len(first.held) == 2
    second = await registry.claim("p2", NAMES, "projections", LONG)
    assert second.fair_share == 2 and second.held == set(NAMES) - first.held
    found = await leases(registry)
    assert set(found["p1"]) == first.held and set(found["p2"]) == second.held


async def test_a_newcomer_gets_what_the_first_holder_releases(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    alone = await registry.claim("p1", NAMES, "projections", LONG)
    assert alone.held == set(NAMES)
    await registry.beat(record("p2"), LONG)
    newcomer = await registry.claim("p2", NAMES, "projections", LONG)
    assert newcomer.held == frozenset() and newcomer.fair_share == 2  # all taken
    renewed = await registry.claim("p1", NAMES, "projections", LONG)
    assert renewed.held == set(NAMES) and renewed.fair_share == 2  # more than its share
    surplus = sorted(renewed.held)[renewed.fair_share :]
    await registry.release("p1", surplus)
    newcomer = await registry.claim("p2", NAMES, "projections", LONG)
    assert newcomer.held == set(surplus)
    assert await leases(registry) == {"p1": ("alpha", "beta"), "p2": ("gamma",)}


async def test_no_name_is_ever_held_by_two_processes(open_registry: Opener) -> None:
    names = [f"view{n}" for n in range(10)]
    holders = [f"p{n}" for n in range(4)]
    registries = [await open_registry() for _ in holders]  # one per "process"
    for holder, registry in zip(holders, registries, strict=True):
        await registry.beat(record(holder), LONG)

    async def claim(registry: ProcessRegistry, holder: str) -> frozenset[str]:
        await asyncio.sleep(0)
        return (await registry.claim(holder, names, "projections", LONG)).held

    for _ in range(3):
        held = await asyncio.gather(
            *(claim(r, h) for r, h in zip(registries, holders, strict=True)),
            *(claim(r, h) for r, h in zip(reversed(registries), reversed(holders), strict=True)),
        )
        latest = {h: frozenset[str]() for h in holders}
        for holder, got in zip([*holders, *reversed(holders)], held, strict=True):
            latest[holder] |= got  # a holder's later claim holds all its earlier one did
        assert sum(len(h) for h in latest.values()) == len(set().union(*latest.values()))
        assert all(len(h) <= 3 for h in latest.values())  # the fair share: ceil(10 / 4)
        found = await leases(registries[0])
        assert {h: set(found[h]) for h in holders} == {h: set(latest[h]) for h in holders}
    assert set().union(*latest.values()) == set(names)  # nothing left unheld


async def test_an_expired_lease_can_be_claimed_by_another(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2"), LONG)
    assert (await registry.claim("p1", ["alpha"], "projections", SHORT)).held == {"alpha"}
    assert (await registry.claim("p2", ["alpha"], "projections", LONG)).held == frozenset()
    await asyncio.sleep(SHORT + 0.1)  # p1 does not renew in time
    assert (await registry.claim("p2", ["alpha"], "projections", LONG)).held == {"alpha"}
    assert (await registry.claim("p1", ["alpha"], "projections", LONG)).held == frozenset()
    assert await leases(registry) == {"p1": (), "p2": ("alpha",)}


async def test_a_renewed_lease_does_not_expire(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2"), LONG)
    assert (await registry.claim("p1", ["alpha"], "projections", 0.5)).held == {"alpha"}
    for _ in range(4):  # 0.6 s in all, renewed every 0.15 s
        await asyncio.sleep(0.15)
        assert (await registry.claim("p1", ["alpha"], "projections", 0.5)).held == {"alpha"}
    assert (await registry.claim("p2", ["alpha"], "projections", LONG)).held == frozenset()


async def test_release_gives_back_only_the_named_leases(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2", ("queries",)), LONG)
    await registry.claim("p1", NAMES, "projections", LONG)
    await registry.release("p1", ["alpha", "gamma"])
    assert await leases(registry) == {"p1": ("beta",), "p2": ()}
    await registry.release("p2", ["beta"])  # not p2's: nothing happens
    await registry.release("p1", [])
    assert await leases(registry) == {"p1": ("beta",), "p2": ()}
    claim = await registry.claim("p1", NAMES, "projections", LONG)
    assert claim.held == set(NAMES)  # what was released is free again


async def test_leave_unregisters_the_process_and_frees_its_leases(
    registry: ProcessRegistry,
) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.beat(record("p2"), LONG)
    first = await registry.claim("p1", NAMES, "projections", LONG)
    await registry.leave("p1")
    assert await leases(registry) == {"p2": ()}
    claim = await registry.claim("p2", NAMES, "projections", LONG)
    assert claim.fair_share == 3 and claim.held == set(NAMES) >= first.held
    await registry.leave("nobody")  # leaving twice, or never having joined, is harmless
    assert set(await listed(registry)) == {"p2"}


async def test_a_lease_of_an_unregistered_holder_is_free(registry: ProcessRegistry) -> None:
    await registry.beat(record("p1"), LONG)
    await registry.claim("ghost", ["alpha"], "projections", LONG)  # it never beat
    assert (await registry.claim("p1", ["alpha"], "projections", LONG)).held == {"alpha"}


# -- membership -------------------------------------------------------------------------


async def test_a_membership_registers_while_it_runs_and_leaves_when_cancelled(
    registry: ProcessRegistry,
) -> None:
    membership = Membership(registry, ["queries", "projections"], "127.0.0.1:8002",
                            heartbeat=0.05, ttl=5.0)  # fmt: skip
    running = asyncio.create_task(membership.run())
    try:
        async with asyncio.timeout(5):
            await membership.joined.wait()
        [found] = await registry.processes()
        assert (found.id, found.roles, found.host, found.pid, found.address) == (
            membership.id, ("queries", "projections"), HOST, os.getpid(), "127.0.0.1:8002",
        )  # fmt: skip

        async def beaten_again() -> bool:
            return (await listed(registry))[membership.id].heartbeat > found.heartbeat

        await eventually(beaten_again)  # it keeps beating
        await registry.claim(membership.id, NAMES, "projections", membership.ttl)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert await registry.processes() == []


async def test_memberships_have_distinct_ids_and_sane_timing(registry: ProcessRegistry) -> None:
    first, second = Membership(registry, ["gateway"]), Membership(registry, ["gateway"])
    assert first.id != second.id and first.id.startswith(f"{HOST}:{os.getpid()}:")
    with pytest.raises(ConfigError):
        Membership(registry, ["gateway"], heartbeat=5.0, ttl=5.0)
    with pytest.raises(ConfigError):
        Membership(registry, ["gateway"], heartbeat=0.0)


# -- PostgreSQL: processes on several machines ------------------------------------------


async def test_postgres_leaves_a_dead_pid_on_another_host_to_its_heartbeat(
    postgres_dsn: str, tmp_path: Path
) -> None:
    dsn = await database_for(postgres_dsn, str(tmp_path), "p")
    registry = await PostgresProcessRegistry.open(dsn)
    try:
        await registry.beat(record("elsewhere", pid=dead_pid(), host=f"not-{HOST}"), LONG)
        await registry.beat(record("here"), LONG)  # cannot see the other host's processes
        assert set(await listed(registry)) == {"elsewhere", "here"}
        await registry.beat(record("dead-here", pid=dead_pid()), LONG)
        await registry.beat(record("here"), LONG)  # but it sees those of its own host
        assert set(await listed(registry)) == {"elsewhere", "here"}
    finally:
        await registry.close()
