"""A functions worker: leases a fair share of the partitions and runs every function on them.

Any number of workers (in `eventgate up` and in `eventgate serve functions` processes) on
one data directory compete for the partitions. Each heartbeat a worker renews its leases,
claims free ones up to its fair share, and gives back any above it only after its runners
have stopped them and saved their checkpoints, so two workers never run one partition.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import uuid_utils

from eventgate.errors import ConfigError
from eventgate.functions.api import Function
from eventgate.functions.context import Services
from eventgate.functions.runner import FunctionRunner
from eventgate.functions.state import Lease

__all__ = ["Catalog", "FunctionWorker", "PartitionLeases", "Runner"]

log = logging.getLogger("eventgate.functions")


class PartitionLeases(Protocol):
    """Who runs which partition: the function store (a database), or the broker."""

    async def rebalance(self, worker: str, ttl: float, release: Iterable[int] = ()) -> Lease: ...
    async def leave(self, worker: str) -> None: ...


class Runner(Protocol):
    """One function on the partitions its worker owns: reading the store, or the broker."""

    function: Function

    def start(self) -> None: ...
    async def assign(self, owned: frozenset[int]) -> None: ...
    async def stop(self) -> None: ...


class Catalog(Protocol):
    """Functions made at runtime (webhook subscriptions): asked for every heartbeat. The
    same Function object means unchanged; a new one under a known name replaces it."""

    async def functions(self) -> Sequence[Function]: ...
    async def retire(self) -> None:
        """Clear what the functions it dropped for good left behind; called after every
        refresh, once the runners of the dropped ones have stopped here."""
        ...

    async def close(self) -> None: ...


class FunctionWorker:
    """Runs `functions` on the partitions this worker leases, until cancelled."""

    def __init__(
        self,
        functions: Sequence[Function],
        services: Services,
        *,
        heartbeat: float = 1.0,
        ttl: float = 5.0,
        worker_id: str | None = None,
        leases: PartitionLeases | None = None,
        runner: Callable[..., Runner] = FunctionRunner,
        catalog: Catalog | None = None,
        **runner_options: Any,
    ) -> None:
        """`leases` default to the function store's; `runner` builds each function's runner
        (the store-reading FunctionRunner, or broker.consumer.JetStreamRunner); `catalog`
        adds the functions made at runtime."""
        names = [f.name for f in functions]
        if len(set(names)) != len(names):
            raise ConfigError(f"two functions share a name: {sorted(names)}")
        if not 0 < heartbeat < ttl:
            raise ConfigError("a worker needs 0 < heartbeat < ttl")
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid_utils.uuid4().hex[:8]}"
        self.functions = list(functions)
        self._services = services
        self._heartbeat = heartbeat
        self._ttl = ttl
        self._leases: PartitionLeases = leases or services.functions
        partitions = services.functions.partitions
        self.runners: list[Runner] = [
            runner(f, services, self.id, partitions, **runner_options) for f in functions
        ]
        self.owned: frozenset[int] = frozenset()
        self._catalog = catalog
        self._made: dict[str, Runner] = {}  # the catalog's functions' runners, by name
        self._new_runner = functools.partial(
            runner, services=services, owner=self.id, partitions=partitions, **runner_options
        )

    async def run(self) -> None:
        """Heartbeat and rebalance until cancelled; then stop cleanly and give up the leases."""
        store = self._services.functions
        await store.register(self.functions)
        for runner in self.runners:
            runner.start()
        loop, failing_since = asyncio.get_running_loop(), None
        try:
            while True:
                try:
                    await self.rebalance()
                    failing_since = None
                except Exception as e:  # the database or the broker is away: keep trying
                    failing_since = failing_since or loop.time()
                    log.warning("worker %s: renewing its partitions failed (%r)", self.id, e)
                    if loop.time() - failing_since >= self._ttl - self._heartbeat:
                        await self._give_up_all()
                try:
                    await self.refresh()
                except Exception as e:  # the runtime-made functions go on as they were
                    log.warning("worker %s: reading its catalog failed (%r)", self.id, e)
                await asyncio.sleep(self._heartbeat)
        finally:
            await asyncio.gather(*(runner.stop() for runner in self.runners))
            try:
                await self._leases.leave(self.id)
            except Exception as e:  # the store or broker is away: the leases lapse with the TTL
                log.warning("worker %s could not give its partitions back (%s); they are"
                            " free once %g s pass", self.id, e, self._ttl)  # fmt: skip
            if self._catalog is not None:
                await self._catalog.close()

    async def refresh(self) -> None:
        """Start the catalog's new functions on the partitions owned, stop the ones gone, and
        restart the changed ones (stopping saves the checkpoints the new runner resumes from)."""
        if self._catalog is None:
            return
        async with asyncio.timeout(self._ttl / 2):
            wanted = {f.name: f for f in await self._catalog.functions()}
        static = {f.name for f in self.functions}
        gone = [r for name, r in self._made.items() if wanted.get(name) is not r.function]
        for stale in gone:
            del self._made[stale.function.name]
            self.runners.remove(stale)
        await asyncio.gather(*(stale.stop() for stale in gone))
        added = [f for name, f in wanted.items() if name not in self._made and name not in static]
        if added:
            await self._services.functions.register(added)
        for f in added:
            made = self._made[f.name] = self._new_runner(f)
            self.runners.append(made)
            made.start()
            await made.assign(self.owned)
        async with asyncio.timeout(self._ttl / 2):
            await self._catalog.retire()

    async def _give_up_all(self) -> None:
        """Stop every partition: unrenewed for most of the TTL, they may be another's now."""
        if self.owned:
            log.warning("worker %s stops partitions %s: its leases may have lapsed", self.id,
                        sorted(self.owned))  # fmt: skip
            await asyncio.gather(*(runner.assign(frozenset()) for runner in self.runners))
            self.owned = frozenset()

    async def rebalance(self) -> None:
        """One heartbeat: renew, claim, and hand back what is above the fair share."""
        async with asyncio.timeout(self._ttl / 2):  # a store or broker away fails, not hangs
            lease = await self._leases.rebalance(self.id, self._ttl)
        keep = frozenset(sorted(lease.owned)[: lease.fair_share])
        if keep != self.owned:
            log.info("worker %s runs partitions %s", self.id, sorted(keep) or "none")
        await asyncio.gather(*(runner.assign(keep) for runner in self.runners))
        self.owned = keep
        if lease.owned - keep:
            async with asyncio.timeout(self._ttl / 2):
                await self._leases.rebalance(self.id, self._ttl, release=lease.owned - keep)
