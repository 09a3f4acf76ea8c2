"""SIGKILL a real process in the middle of appends and projection work, restart, and check
that every acknowledged append survived, nothing is half-written, and the read models are
exactly the fold of the log up to their checkpoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.model import RecordedEvent
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import InventoryItem
from eventgate.examples.inventory.read_models import item_details, item_list
from tests.integration.crash_worker import BATCH_SIZE

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
ACKS_BEFORE_KILL = 400

pytestmark = pytest.mark.slow


def run_until_killed(data: Path, seed: int) -> list[dict[str, int]]:
    """Start the worker, read its acknowledgements, SIGKILL it mid-flight."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash_worker", str(data), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert worker.stdout is not None
    acks = []
    for line in worker.stdout:
        acks.append(json.loads(line))
        if len(acks) >= ACKS_BEFORE_KILL + seed * 37:
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    worker.stdout.close()
    assert worker.returncode == -signal.SIGKILL
    return acks


def fold_details(events: list[RecordedEvent], upto: int) -> dict[str, tuple[object, ...]]:
    """What the item details read model must hold after applying events <= upto."""
    codec = EventCodec(inventory_app().events)
    history: dict[str, list[RecordedEvent]] = defaultdict(list)
    for event in events:
        if event.position <= upto and event.stream_id.startswith("item-"):
            history[event.stream_id].append(event)
    folded = {}
    for stream, stream_events in history.items():
        item = InventoryItem.replay(stream, map(codec.decode, stream_events))
        folded[stream] = (item.name, item.count, item.version, item.active)
    return folded


async def check(data: Path, acks: list[dict[str, int]]) -> None:
    system = await open_system(Settings(data_dir=data), inventory_app())
    try:
        log = await system.store.read_all(limit=1_000_000)
        by_position = {e.position: e for e in log}

        # every acknowledged append is there, exactly as acknowledged
        for ack in acks:
            event = by_position[ack["position"]]
            assert (event.stream_id, event.stream_version) == (ack["stream"], ack["version"])

        # positions and stream versions have no gaps; multi-event appends are whole
        assert [e.position for e in log] == list(range(1, len(log) + 1))
        streams: dict[str, list[RecordedEvent]] = defaultdict(list)
        for event in log:
            streams[event.stream_id].append(event)
        for events in streams.values():
            assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
            if events[0].stream_id.startswith("batch-"):
                assert len(events) % BATCH_SIZE == 0
                assert [e.data["n"] for e in events] == [n % BATCH_SIZE for n in range(len(events))]

        # each read model is the fold of the log up to its checkpoint: nothing lost or doubled
        checkpoint = await system.read_store.load_checkpoint(item_details.name)
        rows = await system.read_store.rows(item_details)
        stored = {r["id"]: (r["name"], r["current_count"], r["version"], r["active"]) for r in rows}
        assert stored == fold_details(log, checkpoint)

        # and after catching up, the fold of the whole log
        head = await system.store.head()
        for projection in system.upsert.projections:
            await system.upsert.follow(projection, until=head)
        rows = await system.read_store.rows(item_details)
        stored = {r["id"]: (r["name"], r["current_count"], r["version"], r["active"]) for r in rows}
        assert stored == fold_details(log, head)
        listed = {r["id"] for r in await system.read_store.rows(item_list) if r["active"]}
        assert listed == {k for k, v in stored.items() if v[3]}
    finally:
        await system.close()


def test_acknowledged_appends_and_read_models_survive_sigkill(tmp_path: Path) -> None:
    all_acks: list[dict[str, int]] = []
    for seed in range(ROUNDS):
        all_acks += run_until_killed(tmp_path, seed)
        asyncio.run(check(tmp_path, all_acks))
