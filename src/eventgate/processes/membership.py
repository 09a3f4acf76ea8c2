"""This process's place in the registry: its heartbeat while it runs, its leave when it stops."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence

import uuid_utils

from eventgate.errors import ConfigError
from eventgate.processes.registry import ProcessRecord, ProcessRegistry

__all__ = ["HEARTBEAT", "TTL", "Membership"]

_log = logging.getLogger(__name__)
HEARTBEAT = 1.0
"""Seconds between heartbeats (and lease renewals)."""
TTL = 5.0
"""Seconds without a heartbeat after which a process counts as gone and its leases are free."""


class Membership:
    """Registers this process under `roles` and beats until cancelled; then leaves."""

    def __init__(
        self,
        registry: ProcessRegistry,
        roles: Sequence[str],
        address: str = "",
        *,
        heartbeat: float = HEARTBEAT,
        ttl: float = TTL,
    ) -> None:
        if not 0 < heartbeat < ttl:
            raise ConfigError("a process needs 0 < heartbeat < ttl")
        self.registry = registry
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid_utils.uuid4().hex[:8]}"
        self.roles = tuple(roles)
        self.address = address
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.joined = asyncio.Event()

    def record(self) -> ProcessRecord:
        return ProcessRecord(self.id, self.roles, socket.gethostname(), os.getpid(),
                             self.address, 0.0, 0.0)  # fmt: skip

    async def run(self) -> None:
        """Beat every `heartbeat` seconds until cancelled; a failed beat is logged, retried."""
        try:
            while True:
                try:
                    await self.registry.beat(self.record(), self.ttl)
                    self.joined.set()
                except Exception as e:
                    _log.warning("heartbeat of %s failed (%s); retrying", self.id, e)
                await asyncio.sleep(self.heartbeat)
        finally:
            try:
                await asyncio.shield(self.registry.leave(self.id))
            except Exception as e:  # the database may be what stopped us
                _log.warning("could not unregister %s: %s", self.id, e)
