"""A real PostgreSQL for the tests: initdb in a temporary directory, started on a free
loopback port, stopped by its PID. Needs the Debian `postgresql` package (`.ci/run` installs
it); where it is missing, tests that need it are skipped, except under CI where that fails."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg

__all__ = ["ROOT", "PostgresServer", "database_for", "free_port", "postgres_binaries"]

ROOT = Path(__file__).resolve().parents[1]


def postgres_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """One throwaway cluster; `dsn` points at its `postgres` database."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.directory = Path(tempfile.mkdtemp(prefix="eventgate-pg-"))
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.pid: int | None = None

    def start(self) -> PostgresServer:
        data = self.directory / "data"
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self.directory.chmod(0o700)
        subprocess.run(
            _as_postgres([str(self.binaries / "initdb"), "-D", str(data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return self.resume()

    def resume(self) -> PostgresServer:
        """Start the server on its data directory and port (again, after `halt`)."""
        data = self.directory / "data"
        options = f"-k {self.directory} -h 127.0.0.1 -p {self.port} -c fsync=on"
        subprocess.run(
            _as_postgres([str(self.binaries / "pg_ctl"), "-D", str(data), "-l",
                          str(self.directory / "server.log"), "-w", "-o", options, "start"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.pid = int((data / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected), keeping its data."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # fast shutdown
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    os.kill(self.pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
            self.pid = None


async def database_for(server_dsn: str, key: str, prefix: str = "t") -> str:
    """The DSN of a database named after `key` (a test's directory, say), created on first
    use: each test gets its own, and reopening with the same key finds the same data."""
    name = f"{prefix}_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    admin = await asyncpg.connect(server_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server_dsn.rsplit("/", 1)[0] + f"/{name}"
