"""Message bases: commands say what to do, events say what happened."""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache
from typing import Any, ClassVar, Self

__all__ = ["Command", "Event", "camel_case", "snake_case"]

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


@lru_cache(maxsize=4096)  # field names: few, and asked for on every request and event
def camel_case(name: str) -> str:
    """`new_name` -> `newName`: the spelling of field names in stored event data."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@lru_cache(maxsize=4096)
def snake_case(name: str) -> str:
    """`newName` -> `new_name`: the spelling of the same field in Python."""
    return _UPPER.sub("_", name).lower()


_STORED_NAMES: dict[type, tuple[tuple[str, str], ...]] = {}  # event classes: declared, few


def _stored_names(cls: type) -> tuple[tuple[str, str], ...]:
    """(field, stored key) of each field of the dataclass `cls`."""
    names = _STORED_NAMES.get(cls)
    if names is None:
        names = _STORED_NAMES[cls] = tuple(
            (f.name, camel_case(f.name)) for f in dataclasses.fields(cls)
        )
    return names


@dataclasses.dataclass(frozen=True)
class Command:
    """An imperative request aimed at one aggregate, named by `id`.

    `creates` marks the command that brings an aggregate into being; every other
    command needs an existing aggregate.
    """

    id: str
    creates: ClassVar[bool] = False


@dataclasses.dataclass(frozen=True)
class Event:
    """A fact in the past tense, stored under a stable `type_name` and `schema_version`.

    The stored type name defaults to the class name and never involves the module
    path, so classes can move freely. Bump `schema_version` when the fields change
    and register an upcaster for the old version.
    """

    type_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
    outcome: ClassVar[str | None] = None
    """What this event means for the command that led to it, when it settles one (an order
    `rejected`): the command status (`/api/commands/{id}`) then says so as its outcome."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__

    def to_data(self) -> dict[str, Any]:
        """The stored form: a JSON-ready dict with camelCase keys."""
        return {key: getattr(self, name) for name, key in _stored_names(self.__class__)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Self:
        """Rebuild the event from its stored form (already upcast to this schema)."""
        return cls(**{snake_case(key): value for key, value in data.items()})
