"""A real NATS server with JetStream for the tests: a temporary store directory, a free
loopback port, stopped by its PID. Needs the Debian `nats-server` package (`.ci/run`
installs it); where it is missing, tests that need it are skipped, except under CI."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.postgres import free_port

__all__ = ["NatsServer", "nats_binary"]


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


class NatsServer:
    """One throwaway server; `url` is where clients connect. `restart()` keeps its data."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="eventgate-nats-"))
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NatsServer:
        self.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.directory / "js"), "-l", str(self.directory / "nats.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server did not start: {self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.directory / "nats.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
