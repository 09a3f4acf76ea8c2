"""A real `eventgate up` process on a free loopback port, for tests over real HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


INTERNAL_TOKEN = "e2e-internal-token-0123456789"


class Component:
    """One `eventgate serve KIND` process; `url` is its address (HTTP ones)."""

    def __init__(self, kind: str, args: list[str], env: Mapping[str, str]) -> None:
        self.kind = kind
        self.args = args
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.stderr: Any = None
        self.url = ""

    def start(self) -> Component:
        command = [sys.executable, "-m", "eventgate.cli", "serve", self.kind, *self.args]
        # a file, not a pipe: a pipe nobody reads fills up and blocks the process's logging
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=dict(self.env),
        )  # fmt: skip
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()
        if not banner.startswith(f"eventgate {self.kind}"):
            _, _, stderr = self.stop(signal.SIGKILL)
            raise RuntimeError(f"eventgate serve {self.kind} did not start: {banner!r} {stderr}")
        found = re.search(r"http://[\d.]+:\d+", banner)
        self.url = found.group(0) if found else ""
        return self

    def restarted(self) -> Component:
        """The same component started again, on the same port."""
        args = list(self.args)
        if self.url:
            args[args.index("--port") + 1] = self.url.rsplit(":", 1)[1]
        return Component(self.kind, args, self.env).start()

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        stdout, _ = self.process.communicate(timeout=20)
        self.stderr.seek(0)
        stderr = self.stderr.read()
        self.stderr.close()
        return self.process.returncode, stdout, stderr


class Deployment:
    """The system as separate processes on one database: commands, queries, projections and
    functions behind `serve gateway`, with the internal token. Used like `Server`."""

    def __init__(self, data: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.data = data
        self.args = args  # --database-url URL, --app ..., shared by every component
        self.env = {**os.environ, "COLUMNS": "200", "EVENTGATE_INTERNAL_TOKEN": INTERNAL_TOKEN,
                    **(env or {})}  # fmt: skip
        self.components: dict[str, Component] = {}
        self.url = ""

    def component(self, kind: str, *extra: str) -> Component:
        """A component of this deployment (not yet started)."""
        ports = ["--port", "0"] if kind in ("commands", "queries", "gateway") else []
        return Component(kind, ["--data", str(self.data), *ports, *self.args, *extra], self.env)

    def start(self, projections: int = 1) -> Deployment:
        """Start every component, `projections` processes of the upsert service."""
        try:
            for kind in ("commands", "queries", "functions"):
                self.components[kind] = self.component(kind).start()
            for n in range(projections):
                self.components[f"projections-{n}"] = self.component("projections").start()
            upstreams = ["--commands", self.components["commands"].url,
                         "--queries", self.components["queries"].url]  # fmt: skip
            self.components["gateway"] = self.component("gateway", *upstreams).start()
        except BaseException:
            self.stop()
            raise
        self.url = self.components["gateway"].url
        return self

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **options)  # type: ignore[arg-type]

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Stop every component; returns the gateway's (exit code, stdout, stderr)."""
        return self.stop_all(signum).get("gateway", (0, "", ""))

    def stop_all(self, signum: int = signal.SIGTERM) -> dict[str, tuple[int, str, str]]:
        """Stop every component; returns each one's (exit code, stdout, stderr)."""
        return {kind: c.stop(signum) for kind, c in self.components.items() if c.process}
