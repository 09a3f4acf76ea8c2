"""The upsert service under leases: it runs what it holds, gives back its surplus, and a
registry that fails (a busy database) never stops it for good."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import CreateInventoryItem
from eventgate.examples.inventory.read_models import item_details, item_list
from eventgate.processes.membership import Membership
from eventgate.processes.registry import Claim, ProcessRecord


class FlakyRegistry:
    """Grants both projections with a fair share of one, and fails as told."""

    def __init__(self) -> None:
        self.fail_claims = False
        self.released: list[set[str]] = []

    async def beat(self, record: ProcessRecord, ttl: float) -> None:
        return None

    async def claim(self, holder: str, names: Sequence[str], role: str, ttl: float) -> Claim:
        if self.fail_claims:
            raise OSError("the database is busy")
        return Claim(frozenset(names), 1)

    async def release(self, holder: str, names: Iterable[str]) -> None:
        self.released.append(set(names))
        raise OSError("the database is busy")

    async def leave(self, holder: str) -> None:
        return None

    async def processes(self) -> list[ProcessRecord]:
        return []

    async def close(self) -> None:
        return None


async def eventually(check: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - the service changes it, no event to wait on
            await asyncio.sleep(0.02)


async def test_a_failing_release_or_claim_does_not_stop_the_upsert_service(
    tmp_path: Path,
) -> None:
    registry = FlakyRegistry()
    membership = Membership(registry, ["projections"], heartbeat=0.05, ttl=0.5)
    system = await open_system(Settings(data_dir=tmp_path), inventory_app(), membership)
    beating = asyncio.create_task(membership.run())
    running = asyncio.create_task(system.upsert.run())
    try:
        first = sorted([item_details.name, item_list.name])[0]
        await eventually(lambda: system.upsert.held == {first} and registry.released)
        await asyncio.sleep(0.2)  # several more beats, each failing to give the surplus back
        assert not running.done(), running
        assert system.upsert.held == {first}
        result = await system.commands.execute(CreateInventoryItem("a", "widget"))
        await eventually(lambda: system.feed.position(first) >= result.position)

        registry.fail_claims = True  # past the TTL without a renewal: stop, do not fight
        await eventually(lambda: system.upsert.held == frozenset())
        assert not running.done()
        registry.fail_claims = False  # and take it up again once the registry answers
        await eventually(lambda: system.upsert.held == {first})
    finally:
        running.cancel()
        beating.cancel()
        await asyncio.gather(running, beating, return_exceptions=True)
        await system.close()
