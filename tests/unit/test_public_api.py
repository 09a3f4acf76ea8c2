"""The package's public names are exactly what it exports, and each resolves."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import eventgate

PACKAGES = [
    "eventgate",
    "eventgate.domain",
    "eventgate.eventstore",
    "eventgate.hub",
    "eventgate.projections",
    "eventgate.commands",
    "eventgate.errors",
    "eventgate.functions",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.{public} is in __all__ but missing"


def test_the_top_level_exports_no_private_or_unlisted_names() -> None:
    exported = {
        name
        for name, value in vars(eventgate).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }
    assert exported == set(eventgate.__all__)
