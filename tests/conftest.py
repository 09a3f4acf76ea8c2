"""Shared fixtures: a real system on a temporary data directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from tests.nats import NatsServer, nats_binary
from tests.postgres import PostgresServer, postgres_binaries


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    system = await open_system(Settings(data_dir=tmp_path / "data"), inventory_app())
    yield system
    await system.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL on a free loopback port for the whole session, stopped by PID.
    Skipped where PostgreSQL is not installed, except under CI (`.ci/run` installs it)."""
    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer(binaries).start()
    yield server.dsn
    server.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A real NATS JetStream on a free loopback port for the whole session, stopped by PID.
    Skipped where nats-server is not installed, except under CI (`.ci/run` installs it)."""
    binary = nats_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed (apt-get install nats-server)")
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    server = NatsServer(binary).start()
    yield server
    server.remove()
