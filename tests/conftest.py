"""Shared fixtures: a real system on a temporary data directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app
from tests.nats import NatsServer, nats_binary
from tests.postgres import PostgresServer, database_for, postgres_binaries

T = TypeVar("T")


def installed(found: T | None, package: str) -> T:
    """`found`, or skip the test: the Debian `package` is missing (a failure under CI, whose
    `.ci/run` installs it)."""
    if found is None:
        message = f"{package} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    system = await open_system(Settings(data_dir=tmp_path / "data"), inventory_app())
    yield system
    await system.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def either(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[System]:
    """A system on SQLite files, or on a PostgreSQL database of its own."""
    url = None
    if request.param == "postgres":
        url = await database_for(request.getfixturevalue("postgres_dsn"), str(tmp_path))
    settings = Settings(data_dir=tmp_path / "data", database_url=url, poll_interval=0.05)
    system = await open_system(settings, inventory_app())
    yield system
    await system.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own (not the session's), for a test that stops it under
    running processes (`halt`/`resume` keep its data and port)."""
    server = PostgresServer(installed(postgres_binaries(), "postgresql")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A real PostgreSQL on a free loopback port for the whole session, stopped by PID.
    Skipped where PostgreSQL is not installed, except under CI (`.ci/run` installs it)."""
    binaries = installed(postgres_binaries(), "postgresql")
    server = PostgresServer(binaries).start()
    yield server.dsn
    server.stop()


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    """A real NATS JetStream on a free loopback port for one test module, stopped by PID: an
    app's stream (EVENTGATE_<APP>) holds one store's events, so two modules that each run
    `up --broker` with a store of their own must not share it. Skipped where nats-server is
    not installed, except under CI (`.ci/run` installs it)."""
    server = NatsServer(installed(nats_binary(), "nats-server")).start()
    yield server
    server.remove()
