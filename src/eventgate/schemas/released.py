"""The released schemas file: every event schema an app has released, committed beside its code.

One JSON file, keys sorted and indented so a change reads well in a diff:
`{"app": name, "format": 1, "events": {type: {version: schema}}}`. `eventgate schemas
release` writes it, `eventgate schemas check` compares the code with it, and the registry
serves the older versions it keeps.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from eventgate.errors import ConfigError
from eventgate.schemas.generate import Schemas

__all__ = ["FILE_NAME", "FORMAT", "Released", "default_location", "read_released", "write_released"]

FILE_NAME = "event-schemas.json"
FORMAT = 1


@dataclass(frozen=True)
class Released:
    """What a released file holds."""

    app: str
    events: Schemas


def default_location(reference: str) -> Path:
    """Where the app `module:attribute` keeps its released schemas: `event-schemas.json` in
    its package, or `<module>.event-schemas.json` beside a plain module."""
    module = reference.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"cannot find app module {module!r}: {e}") from e
    if spec is None or spec.origin is None:
        raise ConfigError(f"cannot find app module {module!r}")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        return origin.parent / FILE_NAME
    return origin.with_name(f"{origin.stem}.{FILE_NAME}")


def read_released(path: Path) -> Released:
    """The released schemas in `path` (ConfigError when it is missing or not one)."""
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"no released schemas at {path} (run `eventgate schemas release`)"
        ) from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigError(f"cannot read released schemas {path}: {e}") from e
    try:
        if document["format"] != FORMAT:
            raise ConfigError(f"{path} is format {document['format']!r}, not {FORMAT}")
        events = {
            str(name): {int(v): dict(schema) for v, schema in versions.items()}
            for name, versions in document["events"].items()
        }
        return Released(str(document["app"]), events)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path} is not a released schemas file: {e!r}") from e


def write_released(path: Path, released: Released) -> None:
    """Write `released` to `path` (sorted, indented, ending in a newline)."""
    document: dict[str, Any] = {
        "app": released.app,
        "format": FORMAT,
        "events": {
            name: {str(v): versions[v] for v in sorted(versions)}
            for name, versions in released.events.items()
        },
    }
    text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    try:
        path.write_bytes(text)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e}") from e
