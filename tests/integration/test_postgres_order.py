"""Gap safety on PostgreSQL: writers in several processes whose commits are randomly delayed
after their positions are taken; a subscriber and a paging reader never skip or repeat one."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest

from eventgate.eventstore.postgres import PostgresEventStore
from tests.postgres import ROOT

pytestmark = pytest.mark.slow

WRITERS = 6
APPENDS = 40


async def fresh_database(server_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"


async def test_no_subscriber_skips_or_repeats_an_event_of_concurrent_delayed_writers(
    postgres_dsn: str,
) -> None:
    dsn = await fresh_database(postgres_dsn, "gap_safety")
    store = await PostgresEventStore.open(dsn, poll_interval=0.01)
    try:
        subscribed: list[int] = []
        paged: list[int] = []
        done = asyncio.Event()

        async def subscriber() -> None:
            async for batch in store.subscribe(after=0, batch_size=7):
                subscribed.extend(e.position for e in batch)

        async def until_caught_up() -> None:
            following = asyncio.create_task(subscriber())
            await done.wait()
            head = await store.head()
            while subscribed[-1:] != [head]:  # noqa: ASYNC110 (another task's progress)
                await asyncio.sleep(0.05)
            following.cancel()

        async def pager() -> None:
            while not done.is_set() or (paged[-1:] != [await store.head()]):
                batch = await store.read_all(after=paged[-1] if paged else 0, limit=5)
                paged.extend(e.position for e in batch)
                await asyncio.sleep(0)

        async def writers() -> None:
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.integration.pg_writer",
                    dsn,
                    str(n),
                    str(APPENDS),
                    str(1000 + n),
                    cwd=ROOT,
                )
                for n in range(WRITERS)
            ]
            codes = [await p.wait() for p in processes]
            assert codes == [0] * WRITERS
            done.set()

        await asyncio.wait_for(asyncio.gather(until_caught_up(), pager(), writers()), 120)
        everything = [e.position for e in await store.read_all(limit=100_000)]
        assert len(everything) == len(set(everything)) >= WRITERS * APPENDS
        assert everything == sorted(everything)
        assert subscribed == everything  # none skipped, none repeated, in order
        assert paged == everything
    finally:
        await store.close()
