"""What breaks readers between the released schemas and the code's, unless an upcaster covers it.

Events are read both ways: the app's new code reads data stored under the released schema
(a removed field, a new required one or a changed type fails there), and consumers written
against the released schema read what the new code stores (a removed field, a field that
may now be missing or a changed type fails there). So a field's schema must stay the same
(annotations aside) and the required fields too; adding an optional field is safe. A bumped
`schema_version` with upcasters from the released version on covers any change: old data is
lifted to the new shape, and consumers see the new version in `schemaversion`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from eventgate.schemas.generate import Schemas

__all__ = ["breaking_changes"]

_ANNOTATIONS = frozenset(
    {"title", "description", "examples", "default", "$comment", "deprecated", "$schema"}
)
_NAMED = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})


def breaking_changes(
    released: Schemas, current: Schemas, upcaster: Callable[[str, int], bool]
) -> list[str]:
    """One line per change from `released` to `current` that breaks readers; `upcaster(type,
    version)` says whether a step lifts that type's data from `version` to the next."""
    problems: list[str] = []
    for name, versions in sorted(released.items()):
        if name not in current:
            problems.append(f"{name}: event type removed (no event class is stored as {name})")
            continue
        ((version, schema),) = current[name].items()
        first, last = min(versions), max(versions)
        if version < last:
            problems.append(f"{name}: schema version {version} is below the released {last}")
            continue
        # every released version's stored events must still be lifted to the current one
        missing = [v for v in range(first, version) if not upcaster(name, v)]
        if missing:
            problems.append(f"{name}: schema version {first} -> {version} but no"
                            f" upcaster from version {missing[0]}")  # fmt: skip
        if version == last:
            problems += [f"{name} v{version}: {p}" for p in _changes(versions[last], schema)]
    return problems


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The breaking differences between two schemas of the same version's data."""
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    problems = [f"field {f} removed or renamed" for f in old_fields if f not in new_fields]
    for field, schema in old_fields.items():
        if field not in new_fields:
            continue
        was = _canonical(schema, old.get("$defs", {}), frozenset())
        now = _canonical(new_fields[field], new.get("$defs", {}), frozenset())
        if was != now:
            problems.append(f"field {field} changed type: {_brief(was)} -> {_brief(now)}")
        if field in old_required and field not in new_required:
            problems.append(f"field {field} is no longer required (readers expect it)")
    for field in new_fields:
        if field in new_required and field not in old_required:
            became = "became required" if field in old_fields else "is a new required field"
            problems.append(f"field {field} {became} (stored events lack it)")
    return problems


def _canonical(schema: Any, definitions: dict[str, Any], seen: frozenset[str]) -> Any:
    """`schema` without annotations and with its `$ref`s replaced by what they name."""
    if isinstance(schema, list):
        return [_canonical(item, definitions, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref")
    if isinstance(reference, str) and reference.startswith("#/$defs/"):
        name = reference.removeprefix("#/$defs/")
        if name not in seen and name in definitions:
            return _canonical(definitions[name], definitions, seen | {name})
    canonical: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NAMED:  # names of properties, not keywords: keep every one
            canonical[key] = {k: _canonical(v, definitions, seen) for k, v in value.items()}
        elif key not in _ANNOTATIONS:
            canonical[key] = _canonical(value, definitions, seen)
    return canonical


def _brief(schema: Any, limit: int = 80) -> str:
    text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."
