"""An application definition: the explicit list of what a service is made of, and its loader."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event
from eventgate.errors import ConfigError
from eventgate.eventstore.upcasting import Upcasters
from eventgate.functions.api import Function
from eventgate.projections.projection import Projection
from eventgate.resources.declaration import Resource

__all__ = ["RESERVED_PATHS", "App", "load_app"]

RESERVED_PATHS = ("/api/events", "/api/commands", "/api/schemas")
"""Collection paths no resource may take: eventgate serves these for every app."""


@dataclass(frozen=True)
class App:
    """What a developer hands eventgate: commands routed to aggregates, the events they
    record, the read models fed by those events, the resources that put commands and read
    models on HTTP, the functions events trigger, upcasters for old event versions, and the
    file of its released event schemas (docs/schemas.md), whose older versions it serves."""

    name: str
    commands: Mapping[type[Command], type[Aggregate]]
    events: Sequence[type[Event]]
    projections: Sequence[Projection] = ()
    resources: Sequence[Resource] = ()
    functions: Sequence[Function] = ()
    upcasters: Upcasters = field(default_factory=Upcasters)
    event_schemas: Path | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            raise ConfigError(f"app {self.name}: two projections share a name")
        known = {e.type_name for e in self.events}
        for projection in self.projections:
            unknown = projection.event_types - known
            if unknown:
                raise ConfigError(
                    f"projection {projection.name} handles unknown events {sorted(unknown)}"
                )
        for resource in self.resources:
            resource.check(self.commands, self.projections)
        paths = [p for r in self.resources for p in r.collection_paths]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"app {self.name}: two resources share a path")
        taken = sorted(set(paths) & set(RESERVED_PATHS))
        if taken:
            raise ConfigError(
                f"app {self.name}: {', '.join(taken)} is eventgate's own (the event stream,"
                " command status and schema registry live under /api/events, /api/commands"
                " and /api/schemas)"
            )
        functions = [f.name for f in self.functions]
        if len(set(functions)) != len(functions):
            raise ConfigError(f"app {self.name}: two functions share a name")


def load_app(reference: str) -> App:
    """The app named `module:attribute` (an `App`, or a function returning one). The
    current directory is importable, as for `python -m`."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"app {reference!r} must look like module:attribute")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ConfigError as e:
        raise ConfigError(f"app {reference!r} is not valid: {e}") from e
    except Exception as e:
        raise ConfigError(f"cannot import app module {module_name!r}: {e}") from e
    found = getattr(module, attribute, None)
    if found is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}")
    if callable(found) and not isinstance(found, App):
        try:
            found = found()
        except Exception as e:
            raise ConfigError(f"app {reference!r} could not be built: {e}") from e
    if not isinstance(found, App):
        raise ConfigError(f"{reference} is a {type(found).__name__}, not an eventgate App")
    return found
