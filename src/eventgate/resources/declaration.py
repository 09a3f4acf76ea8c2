"""Resources: how an app's commands and read models appear over HTTP, declared as data.

A resource is a collection path and its item path (`{path}/{id}`). POST on the collection
runs the creating command; PUT, POST and DELETE on the item run the commands declared for
them (several on one method are told apart by the `domain-model` parameter of
Content-Type). The list answers from one read model, the item from another (or the same).
Routes, the OpenAPI document and the gateway's table are all generated from these.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventgate.domain.messages import Command, camel_case
from eventgate.errors import ConfigError
from eventgate.projections.projection import Projection

__all__ = ["ITEM_METHODS", "ItemView", "ListView", "Resource"]

ITEM_METHODS = ("PUT", "POST", "DELETE")
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@dataclass(frozen=True)
class ListView:
    """The collection's GET: `fields` of the rows of `projection`, paged in `order`.

    `where` fixes column values every listed row has (`{"active": True}` hides logically
    deleted rows); `search` is the text column the `q` parameter matches as a substring;
    `filters` are columns a client may match exactly (`?status=pending`, by camelCase name).
    """

    projection: Projection
    fields: Sequence[str]
    order: Sequence[str] = ()
    where: Mapping[str, Any] = field(default_factory=dict)
    search: str | None = None
    filters: Sequence[str] = ()
    model: str | None = None

    @property
    def sort_columns(self) -> tuple[str, ...]:
        """The order, ending with the key so that every row has one place (stable cursors)."""
        order = tuple(self.order)
        key = self.projection.key
        return order if key in order else (*order, key)

    @property
    def domain_model(self) -> str:
        return self.model or f"{_pascal(self.projection.name)}Collection"


@dataclass(frozen=True)
class ItemView:
    """The item's GET: `fields` of the row keyed by the id. `version` is the column holding
    the aggregate's version (behind the opaque ETag and If-Match); a row whose columns hold
    the values in `gone` is logically deleted (410)."""

    projection: Projection
    fields: Sequence[str]
    version: str = "version"
    gone: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None

    @property
    def domain_model(self) -> str:
        return self.model or _pascal(self.projection.name)


@dataclass(frozen=True)
class Resource:
    """A collection at `path` and its items at `path/{id}`; `aliases` are other collection
    paths served the same way (not in the OpenAPI document)."""

    path: str
    item: ItemView
    list: ListView | None = None
    create: type[Command] | None = None
    put: type[Command] | Sequence[type[Command]] = ()
    post: type[Command] | Sequence[type[Command]] = ()
    delete: type[Command] | Sequence[type[Command]] = ()
    aliases: Sequence[str] = ()
    title: str | None = None

    def __post_init__(self) -> None:
        for method in ("put", "post", "delete"):
            value = getattr(self, method)
            commands = (value,) if isinstance(value, type) else tuple(value)
            object.__setattr__(self, method, commands)
        for path in (self.path, *self.aliases):
            if not _PATH.match(path):
                raise ConfigError(f"resource path {path!r} must look like /api/things")

    @property
    def name(self) -> str:
        return self.title or self.path.rsplit("/", 1)[-1]

    @property
    def collection_paths(self) -> tuple[str, ...]:
        return (self.path, *self.aliases)

    @property
    def item_paths(self) -> tuple[str, ...]:
        return tuple(f"{path}/{{id}}" for path in self.collection_paths)

    def item_commands(self) -> dict[str, tuple[type[Command], ...]]:
        """Method -> its commands, for each item method that has any."""
        found = {m: tuple(getattr(self, m.lower())) for m in ITEM_METHODS}
        return {method: commands for method, commands in found.items() if commands}

    def commands(self) -> builtins.list[type[Command]]:
        """Every command this resource runs."""
        creating = [self.create] if self.create else []
        return [*creating, *(c for cs in self.item_commands().values() for c in cs)]

    def check(
        self, commands: Mapping[type[Command], object], projections: Sequence[Projection]
    ) -> None:
        """Raise a ConfigError naming what this resource declares that the app lacks."""
        where = f"resource {self.path}"
        for command in self.commands():
            if command not in commands:
                raise ConfigError(f"{where}: {command.__name__} is not a command of the app")
        if self.create is not None and not self.create.creates:
            raise ConfigError(f"{where}: create={self.create.__name__} must set creates = True")
        for method, declared in self.item_commands().items():
            for command in declared:
                if command.creates:
                    raise ConfigError(f"{where}: {method} {command.__name__} creates; use create=")
            names = [c.__name__ for c in declared]
            if len(set(names)) != len(names):
                raise ConfigError(f"{where}: {method} names one command twice")
        known = {p.name: p for p in projections}
        _check_item(where, self.item, known)
        if self.list is not None:
            _check_list(where, self.list, known)


def _check_item(where: str, view: ItemView, known: Mapping[str, Projection]) -> None:
    _check_projection(where, "item", view.projection, known)
    if not view.fields:
        raise ConfigError(f"{where}: the item view needs fields")
    _check_columns(where, "item", view.projection, view.fields)
    _check_columns(where, "item", view.projection, [view.version, *view.gone])
    if view.projection.columns[view.version] is not int:
        raise ConfigError(f"{where}: item version column {view.version!r} must be an int")


def _check_list(where: str, view: ListView, known: Mapping[str, Projection]) -> None:
    _check_projection(where, "list", view.projection, known)
    if not view.fields:
        raise ConfigError(f"{where}: the list view needs fields")
    _check_columns(where, "list", view.projection, view.fields)
    searched = [view.search] if view.search else []
    _check_columns(where, "list", view.projection, [*view.order, *view.where, *view.filters])
    _check_columns(where, "list", view.projection, searched)
    if view.search is not None and view.projection.columns[view.search] is not str:
        raise ConfigError(f"{where}: list search column {view.search!r} must be a str")
    reserved = {"limit", "cursor", "q"} & {camel_case(f) for f in view.filters}
    if reserved:
        raise ConfigError(f"{where}: list filters may not be named {sorted(reserved)}")


def _check_projection(
    where: str, role: str, projection: Projection, known: Mapping[str, Projection]
) -> None:
    if known.get(projection.name) is not projection:
        raise ConfigError(f"{where}: {role} read model {projection.name} is not in the app")


def _check_columns(where: str, role: str, projection: Projection, columns: Sequence[str]) -> None:
    unknown = sorted(set(columns) - set(projection.columns))
    if unknown:
        raise ConfigError(f"{where}: {role} read model {projection.name} has no column {unknown}")


def _pascal(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))
