"""Upcasters lift stored event data from an old schema version to the current one, step by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventgate.errors import ConfigError, UnknownEventType

__all__ = ["Upcaster", "Upcasters"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """A table of one-step upcasters: (type, from_version) -> data of from_version + 1.

    Reading applies the steps in order until no step is left, so version 1 data of a
    type now at version 3 goes through 1->2 and then 2->3; each step stays small and
    is written once, when the schema changes.
    """

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, type_name: str, from_version: int, step: Upcaster) -> None:
        """Add the step that turns `type_name` data at `from_version` into the next version."""
        key = (type_name, from_version)
        if key in self._steps:
            raise ConfigError(f"two upcasters for {type_name} version {from_version}")
        self._steps[key] = step

    def step(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of `register`."""

        def decorate(function: Upcaster) -> Upcaster:
            self.register(type_name, from_version, function)
            return function

        return decorate

    def has_step(self, type_name: str, from_version: int) -> bool:
        """Whether a step lifts `type_name` data from `from_version` (for schema checks)."""
        return (type_name, from_version) in self._steps

    def upcast(
        self, type_name: str, version: int, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Apply every step from `version` on; returns the reached version and its data."""
        while (step := self._steps.get((type_name, version))) is not None:
            try:
                data = step(data)
            except (KeyError, TypeError, ValueError) as e:
                raise UnknownEventType(
                    f"upcasting {type_name} from version {version} failed: {e!r}"
                ) from e
            version += 1
        return version, data

    def __bool__(self) -> bool:
        return bool(self._steps)
