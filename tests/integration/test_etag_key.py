"""Processes starting together on one data directory agree on one ETag key."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from eventgate.http.etags import KEY_BYTES, load_or_create_key


def test_processes_racing_to_create_the_key_all_get_the_same_one(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        for attempt in range(10):
            path = tmp_path / f"etag-{attempt}.key"
            keys = list(pool.map(load_or_create_key, [path] * 8))
            assert len(set(keys)) == 1 and len(keys[0]) == KEY_BYTES
            assert path.read_bytes() == keys[0]
            assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"etag-{n}.key" for n in range(10)]
