"""What makes a process ready: its stores answer, and its checkpoints move.

A check is a named coroutine that returns None when fine, else a short reason. A store
check is one cheap query; a checkpoint check remembers each projection's (or function's)
checkpoint and when it last moved, and calls it stuck when events wait behind it (lag > 0)
and it has not moved for `stall_after` seconds. A parked stream does not hold a projection's
checkpoint back (parking is how a poison event is kept out of the way), so a poison event
never makes a process unready; a stopped upsert service with events to process does.
Checks run when a probe asks, each within `timeout` seconds, so a hung database is a failed
check and not a hung probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from eventgate.errors import ConfigError
from eventgate.gateway.internal import INTERNAL_HEADER

if TYPE_CHECKING:
    from eventgate.bootstrap import System
    from eventgate.broker.connection import Broker

__all__ = [
    "STALL_ENV",
    "Check",
    "Readiness",
    "Stalls",
    "broker_check",
    "services_check",
    "stall_after",
    "system_checks",
]

Check = Callable[[], Awaitable[str | None]]
STALL_ENV = "EVENTGATE_STALL_AFTER"
DEFAULT_STALL = 60.0
"""Seconds a checkpoint with lag may stand still before its process is not ready."""


def stall_after(environ: Mapping[str, str] = os.environ) -> float:
    """The stall time from EVENTGATE_STALL_AFTER (seconds), else DEFAULT_STALL."""
    given = environ.get(STALL_ENV)
    if not given:
        return DEFAULT_STALL
    try:
        seconds = float(given)
    except ValueError:
        raise ConfigError(f"{STALL_ENV} must be a number of seconds, not {given!r}") from None
    if not seconds > 0:
        raise ConfigError(f"{STALL_ENV} must be more than 0 seconds")
    return seconds


@dataclass
class Stalls:
    """Each checkpoint's last value and when it last changed; stuck: lag and no move."""

    stall_after: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)

    def stuck(self, name: str, checkpoint: int, lag: int) -> bool:
        now = self.clock()
        last = self._seen.get(name)
        if last is None or last[0] != checkpoint or lag == 0:
            self._seen[name] = (checkpoint, now)
            return False
        return now - last[1] >= self.stall_after


@dataclass
class Readiness:
    """The checks of one process; `run` answers each one's reason (None: fine)."""

    checks: dict[str, Check] = field(default_factory=dict)
    timeout: float = 2.0

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, str | None]:
        names = list(self.checks)
        found = await asyncio.gather(*(self._one(self.checks[n]) for n in names))
        return dict(zip(names, found, strict=True))

    async def _one(self, check: Check) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):  # (not wait_for: gh-86296 in 3.11)
                return await check()
        except TimeoutError:
            return f"no answer within {self.timeout:g} s"
        except Exception as e:  # any failure of a store is what the check is for
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def system_checks(
    readiness: Readiness,
    system: System,
    *,
    projections: bool = False,
    functions: bool = False,
    stalls: Stalls | None = None,
) -> None:
    """Add the checks of an open `system`: its event, read and function stores answer;
    with `projections` (or `functions`), their checkpoints move while they have lag."""
    stalls = stalls or Stalls(stall_after())
    readiness.add("event store", _event_store(system))
    readiness.add("read store", _read_store(system))
    readiness.add("function store", _function_store(system))
    if projections:
        readiness.add("projections", _projections(system, stalls))
    if functions:
        readiness.add("functions", _functions(system, stalls))


def services_check(client: httpx.AsyncClient, urls: Sequence[str], token: str | None) -> Check:
    """Ready when one of the services at `urls` says it is (a gateway's upstreams)."""
    headers = {} if token is None else {INTERNAL_HEADER: token}

    async def check() -> str | None:
        for url in urls:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url.rstrip('/')}/readyz", headers=headers)).is_success:
                    return None
        return f"none of {len(urls)} instance(s) is ready"

    return check


def broker_check(broker: Broker) -> Check:
    """The broker connection of this process (NATS reconnects by itself; down meanwhile)."""

    async def check() -> str | None:
        return None if broker.client.is_connected else "not connected to the broker"

    return check


def _event_store(system: System) -> Check:
    async def check() -> str | None:
        await system.store.head()
        return None

    return check


def _read_store(system: System) -> Check:
    async def check() -> str | None:
        await system.read_store.parked_streams()
        return None

    return check


def _function_store(system: System) -> Check:
    async def check() -> str | None:
        await system.functions.status()
        return None

    return check


def _projections(system: System, stalls: Stalls) -> Check:
    async def check() -> str | None:
        stuck = [s.name for s in await system.upsert.status()
                 if stalls.stuck(f"projection {s.name}", s.checkpoint, s.lag)]  # fmt: skip
        return _stuck(stuck, stalls)

    return check


def _functions(system: System, stalls: Stalls) -> Check:
    async def check() -> str | None:
        stuck = []
        statuses = await system.functions.status()
        if system.settings.broker_url is not None:
            return None  # consumed from the broker: its lag is the broker's (eventgate status)
        for f in statuses:
            lag = await system.store.count_after(f.checkpoint)
            if stalls.stuck(f"function {f.name}", f.checkpoint, lag):
                stuck.append(f.name)
        return _stuck(stuck, stalls)

    return check


def _stuck(names: list[str], stalls: Stalls) -> str | None:
    if not names:
        return None
    return f"checkpoint of {', '.join(names)} has lag and has not moved for" \
           f" {stalls.stall_after:g} s"  # fmt: skip
