"""Shared fixtures: a real system on a temporary data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.examples.inventory import inventory_app


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    system = await open_system(Settings(data_dir=tmp_path / "data"), inventory_app())
    yield system
    await system.close()
