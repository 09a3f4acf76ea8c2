"""Readiness checks: a checkpoint is stuck only with lag and no move; a hung check fails."""

from __future__ import annotations

import asyncio

import pytest

from eventgate.errors import ConfigError
from eventgate.health.logs import log_format
from eventgate.health.readiness import Readiness, Stalls, stall_after


def test_a_checkpoint_is_stuck_only_with_lag_and_no_move_for_the_stall_time() -> None:
    now = [0.0]
    stalls = Stalls(10.0, clock=lambda: now[0])
    assert not stalls.stuck("p", 5, 3)
    now[0] = 9.0
    assert not stalls.stuck("p", 5, 3)
    now[0] = 10.0
    assert stalls.stuck("p", 5, 3)
    assert not stalls.stuck("p", 6, 2)  # it moved: the stall time starts again
    now[0] = 30.0
    assert not stalls.stuck("q", 7, 0)
    now[0] = 50.0
    assert not stalls.stuck("q", 7, 0)  # no lag: idle, not stuck


async def test_readiness_reports_each_check_and_a_hung_one_fails() -> None:
    async def fine() -> str | None:
        return None

    async def hung() -> str | None:
        await asyncio.sleep(60)
        return None

    async def broken() -> str | None:
        raise OSError("connection refused")

    readiness = Readiness({"a": fine, "b": hung, "c": broken}, timeout=0.05)
    assert await readiness.run() == {
        "a": None,
        "b": "no answer within 0.05 s",
        "c": "OSError: connection refused",
    }


def test_settings_refuse_what_they_cannot_use() -> None:
    assert stall_after({}) == 60.0
    assert stall_after({"EVENTGATE_STALL_AFTER": "2.5"}) == 2.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ConfigError):
            stall_after({"EVENTGATE_STALL_AFTER": bad})
    assert log_format(None, {}) == "text"
    assert log_format(None, {"EVENTGATE_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ConfigError):
        log_format("xml", {})
