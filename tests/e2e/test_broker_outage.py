"""`eventgate up --broker` stops promptly when its NATS server is gone: a stopping function
worker used to give its partition leases back one broker request at a time, each waiting
out its timeout while nats-py reconnected (more than 20 s), and closing the connection
then raised from nats-py (exit code 1)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import installed
from tests.e2e.server import Server
from tests.nats import NatsServer, nats_binary

pytestmark = pytest.mark.slow

STOP_WITHIN = 10.0
"""Seconds a stop may take, with a wide margin: the point is that it does not hang."""


@pytest.fixture
def own_nats() -> Iterator[NatsServer]:
    """A NATS server of this test's own, to stop under eventgate."""
    server = NatsServer(installed(nats_binary(), "nats-server")).start()
    try:
        yield server
    finally:
        server.remove()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_cleanly_and_promptly_once_its_broker_is_gone(
    tmp_path: Path, own_nats: NatsServer, signum: int
) -> None:
    server = Server(tmp_path / "data", "--broker", own_nats.url).start()
    try:
        with server.client() as client:
            created = client.post("/api/inventory-items", json={"name": "w"})
            assert created.status_code == 202, created.text
            token = created.headers["Consistency-Token"]
            shown = client.get(created.headers["Location"], headers={"Consistency-Token": token})
            assert shown.status_code == 200  # projected from the stream: it flowed through NATS
        own_nats.stop()
        assert server.process is not None
        server.process.send_signal(signum)
        try:
            server.process.wait(timeout=STOP_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"eventgate up still running {STOP_WITHIN:g} s after the signal")
    finally:
        code, stdout, stderr = server.stop(signal.SIGKILL)
    assert code == 0, stderr
    assert "stopped cleanly" in stdout
    assert "Traceback" not in stderr
