"""`eventgate serve functions --workers 2`, one worker SIGKILLed mid-work: the other takes
over its streams, the supervisor restarts it, every event runs at least once, no stream
skips an event, and every guarded side effect happens exactly once downstream. Twice: the
workers reading the store (leases in the database), and consuming from NATS JetStream fed by
`eventgate serve relay` (partitions shared through the broker)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from eventgate.eventstore.model import NewEvent
from eventgate.eventstore.sqlite import SQLiteEventStore
from tests.nats import NatsServer, nats_binary

ROOT = Path(__file__).resolve().parents[2]
EVENTS, STREAMS, CONCURRENCY = 600, 30, 4

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def invocations(out: Path) -> list[dict[str, object]]:
    path = out / "invocations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def downstream(out: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(out / "downstream.sqlite") as db:
        rows = db.execute(sql).fetchall()
    db.close()
    return rows


def start(
    kind: str, data: Path, config: Path, log: IO[str], *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventgate.cli", "serve", kind, "--data", str(data),
         "--config", str(config), *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


async def both_running(log: Path) -> None:
    """Wait until each of the two workers has partitions (and a moment to start on them):
    a second or two, a few when other test runs share the two cores. (The runs that never
    got there were not slow: one worker had failed at start, and the supervisor stopped
    both; the log's end says so.)"""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = await asyncio.to_thread(log.read_text)
        found = re.findall(r"worker (\S+) runs partitions \[\d", text)
        if len(set(found)) == 2:
            await asyncio.sleep(1.5)
            return
        await asyncio.sleep(0.1)
    tail = "\n".join(text.splitlines()[-60:])
    raise AssertionError(f"the two workers never shared the partitions; the log ends:\n{tail}")


@pytest.fixture(params=["store", "nats"])
def broker(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """No broker (workers read the store), or a NATS JetStream of this test's own."""
    if request.param == "store":
        yield []
        return
    binary = nats_binary()
    if binary is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(binary).start()
    yield ["--broker", server.url]
    server.remove()


async def test_a_killed_worker_loses_nothing_and_repeats_no_guarded_effect(
    tmp_path: Path, broker: list[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    downstream(out, "CREATE TABLE applied (event_id TEXT NOT NULL)")
    downstream(out, "CREATE TABLE effects (key TEXT PRIMARY KEY, event_id TEXT NOT NULL)")
    config = tmp_path / "eventgate.toml"
    config.write_text(
        'functions = ["tests.integration.functions_for_workers"]\n'
        "app_functions = false\n"
        f"[function_settings]\nout_dir = {json.dumps(str(out))}\n"
    )
    store = await SQLiteEventStore.open(data / "events.sqlite")
    log = (tmp_path / "serve.log").open("w")
    relay = start("relay", data, config, log, *broker) if broker else None
    serve = start("functions", data, config, log, "--workers", "2", *broker)
    try:
        await both_running(tmp_path / "serve.log")
        ids = []
        killed = None
        for n in range(EVENTS):
            [event] = await store.append(f"s-{n % STREAMS}", [NewEvent("Work", {"n": n})])
            ids.append(event.id)
            await asyncio.sleep(0.004)
            if killed is None and n >= EVENTS // 4:
                working = {run["pid"] for run in invocations(out)}
                if len(working) == 2:  # both workers have their share: kill one mid-work
                    killed = min(working)  # type: ignore[type-var]
                    os.kill(killed, signal.SIGKILL)
        assert killed is not None, "the workers never got going"
        deadline = time.monotonic() + 90  # with a broker: the ack wait (30 s), then the rest
        while time.monotonic() < deadline:
            if downstream(out, "SELECT COUNT(*) FROM effects")[0][0] == EVENTS:
                break
            await asyncio.sleep(0.2)
        restarted = [pid for pid in children(serve.pid) if pid != killed]
    finally:
        for process in filter(None, (serve, relay)):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        log.close()
        await store.close()

    runs = invocations(out)
    by_event = Counter(run["id"] for run in runs)
    assert set(by_event) == set(ids), "an event never ran"
    seen: set[tuple[object, object]] = set()
    for run in runs:  # in the order they started: nothing skipped ahead in its stream
        version = run["version"]
        assert version == 1 or (run["stream"], version - 1) in seen  # type: ignore[operator]
        seen.add((run["stream"], version))
    assert len(restarted) == 2, "the supervisor did not restart the killed worker"
    effects = dict(downstream(out, "SELECT event_id, COUNT(*) FROM effects GROUP BY event_id"))
    assert effects == dict.fromkeys(ids, 1)  # exactly once, downstream
    applied = Counter(e for (e,) in downstream(out, "SELECT event_id FROM applied"))
    repeated = [e for e, n in applied.items() if n > 1]
    # A recorded effect is never repeated; only one cut off by the kill between applying and
    # recording may run again (with the same key): at most one per concurrent slot.
    assert len(repeated) <= CONCURRENCY
    redelivered = [e for e, n in by_event.items() if n > 1]
    print(f"redelivered {len(redelivered)} event(s); re-applied {len(repeated)} effect(s)")
    assert serve.returncode == 0
