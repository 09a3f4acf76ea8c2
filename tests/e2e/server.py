"""A real `eventgate up` process on a free loopback port, for tests over real HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """Start with `start()`; `url` is where the gateway listens; stop by signal or kill -9."""

    def __init__(
        self, data: Path, *args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None
    ) -> None:
        self.data = data
        self.args = args
        self.cwd = cwd
        self.env = {**os.environ, "COLUMNS": "200", **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.banner = ""

    def start(self) -> Server:
        command = [sys.executable, "-m", "eventgate.cli", "up", "--data", str(self.data)]
        self.process = subprocess.Popen(
            [*command, "--port", "0", *self.args],
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        assert self.process.stdout is not None
        self.banner = self.process.stdout.readline()
        found = re.search(r"http://[\d.]+:\d+", self.banner)
        if found is None:
            _, _, stderr = self.stop(signal.SIGKILL)
            raise RuntimeError(f"eventgate up did not start: {self.banner!r} {stderr}")
        self.url = found.group(0)
        return self

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **options)  # type: ignore[arg-type]

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Stop the process; returns (exit code, rest of stdout, stderr)."""
        assert self.process is not None
        self.process.send_signal(signum)
        stdout, stderr = self.process.communicate(timeout=20)
        return self.process.returncode, stdout, stderr


def keyed_server(
    directory: Path, config: str, keys: Mapping[str, str], env: Mapping[str, str] | None = None
) -> Server:
    """A server whose config is `config` with `{name}` filled by the sha256 of each key."""
    digests = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in keys.items()}
    path = directory / "eventgate.toml"
    path.write_text(config.format(**digests))
    return Server(directory / "data", "--config", str(path), env=env)
