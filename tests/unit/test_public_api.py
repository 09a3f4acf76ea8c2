"""The package's public names are exactly what it exports, and each resolves."""

from __future__ import annotations

import importlib

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
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    for public in module.__all__:
        assert hasattr(module, public), f"{name}.{public} is in __all__ but missing"


def test_the_top_level_exports_no_private_or_unlisted_names() -> None:
    exported = {n for n in vars(eventgate) if not n.startswith("_") and n[0].isupper()}
    assert exported == set(eventgate.__all__)
