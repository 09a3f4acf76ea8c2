"""Find the functions of importable modules (`--functions my_module`, `functions = [...]`)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from eventgate.errors import ConfigError
from eventgate.functions.api import Function

__all__ = ["load_functions"]


def load_functions(modules: Iterable[str]) -> list[Function]:
    """Every `@function` defined at the top level of each module, in module order.

    The current directory is importable, as for `python -m`, so `--functions my_module`
    finds `./my_module.py`.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: dict[str, Function] = {}
    for name in dict.fromkeys(modules):
        try:
            module = importlib.import_module(name)
        except Exception as e:
            raise ConfigError(f"cannot import functions module {name!r}: {e}") from e
        functions = [value for value in vars(module).values() if isinstance(value, Function)]
        if not functions:
            raise ConfigError(f"module {name!r} defines no @function")
        for f in functions:
            if found.setdefault(f.name, f) is not f:
                raise ConfigError(f"two functions are named {f.name!r} (in {name!r})")
    return list(found.values())
