"""The functions part of the config file.

functions = ["my_module"]        # modules with @function definitions
app_functions = true             # the functions the app itself declares
[function_settings]              # what functions see as ctx.settings
low_stock_threshold = 5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventgate.config import read_toml
from eventgate.errors import ConfigError

__all__ = ["FunctionsConfig", "load_functions_config"]


@dataclass(frozen=True)
class FunctionsConfig:
    """Modules to load functions from, and the settings every function sees as `ctx.settings`."""

    modules: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    app_functions: bool = True


def load_functions_config(path: Path | None) -> FunctionsConfig:
    if path is None:
        return FunctionsConfig()
    document = read_toml(path)
    modules = document.get("functions", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError('functions must be a list of module names, like ["my_module"]')
    settings = document.get("function_settings", {})
    if not isinstance(settings, dict):
        raise ConfigError("function_settings must be a table")
    if "reference_functions" in document:
        raise ConfigError("reference_functions is now app_functions (the app's own functions)")
    own = document.get("app_functions", True)
    if not isinstance(own, bool):
        raise ConfigError("app_functions must be true or false")
    return FunctionsConfig(tuple(modules), settings, own)
