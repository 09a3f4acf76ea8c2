"""Work that one process at a time does: run it while this process holds its lease."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from eventgate.processes.membership import Membership

__all__ = ["while_leased"]

_log = logging.getLogger(__name__)


async def while_leased(
    membership: Membership, name: str, role: str, work: Callable[[], Awaitable[None]]
) -> None:
    """Claim lease `name` every heartbeat; run `work` while it is held, cancel it as soon as
    it is not (or may have lapsed: renewals failing for most of the TTL), until cancelled."""
    registry, loop = membership.registry, asyncio.get_running_loop()
    await membership.joined.wait()
    task: asyncio.Task[None] | None = None
    renewed = loop.time()
    try:
        while True:
            try:
                async with asyncio.timeout(membership.ttl / 2):
                    claim = await registry.claim(membership.id, [name], role, membership.ttl)
                held = name in claim.held
                renewed = loop.time()
            except Exception as e:
                _log.warning("%s: renewing the lease failed (%s)", name, e)
                lapsing = loop.time() - renewed >= membership.ttl - membership.heartbeat
                held = task is not None and not lapsing
            if held and task is None:
                _log.info("%s: lease held by %s", name, membership.id)
                task = asyncio.create_task(_run(work), name=name)
            elif not held and task is not None:
                _log.info("%s: lease given up by %s", name, membership.id)
                await _cancel(task)
                task = None
            if task is not None and task.done():
                await task  # `work` runs until cancelled: if it ended, let its error out
            await asyncio.sleep(membership.heartbeat)
    finally:
        if task is not None:
            await _cancel(task)


async def _run(work: Callable[[], Awaitable[None]]) -> None:
    await work()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
