"""An app may not declare a resource where eventgate serves its own endpoints."""

from __future__ import annotations

import dataclasses

import pytest

from eventgate.app import RESERVED_PATHS
from eventgate.errors import ConfigError
from eventgate.examples.inventory import inventory_app


@pytest.mark.parametrize("path", RESERVED_PATHS)
def test_a_resource_on_a_reserved_path_is_refused(path: str) -> None:
    app = inventory_app()
    moved = [dataclasses.replace(app.resources[0], path=path), *app.resources[1:]]
    with pytest.raises(ConfigError, match=f"{path} is eventgate's own"):
        dataclasses.replace(app, resources=moved)
