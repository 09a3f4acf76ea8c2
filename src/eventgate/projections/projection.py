"""How a read model is declared: a table of columns and one pure handler per event type."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

from eventgate.domain.messages import Event
from eventgate.errors import ConfigError, ProjectionError
from eventgate.eventstore.model import RecordedEvent

__all__ = ["COLUMN_TYPES", "Handler", "Projection", "Row"]

Row = dict[str, Any]
Handler = Callable[[Row | None, RecordedEvent], Row | None]
"""(current row or None, event) -> the whole new row, or None to leave the row as it is."""

COLUMN_TYPES: Mapping[type, str] = {str: "TEXT", int: "INTEGER", bool: "INTEGER", float: "REAL"}
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class Projection:
    """A read model keyed by stream id, kept by upserts from the events it handles.

    Handlers are pure: they get the current row (or None) and the event, and return the
    new row. They never touch a database, so the same projection runs on any read store,
    a replay gives exactly the rows of the live run, and logical deletes are just rows
    whose flag says so.
    """

    def __init__(
        self,
        name: str,
        columns: Mapping[str, Any],
        *,
        key: str = "id",
        indexes: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.name = _identifier(name)
        self.columns = {_identifier(column): _base(kind) for column, kind in columns.items()}
        self.nullable = frozenset(c for c, kind in columns.items() if _base(kind) is not kind)
        """Columns declared `T | None`: only these may hold None."""
        unsupported = [c for c, kind in self.columns.items() if kind not in COLUMN_TYPES]
        if unsupported:
            raise ConfigError(f"projection {name}: unsupported column types for {unsupported}")
        if key not in self.columns:
            raise ConfigError(f"projection {name}: key column {key!r} is not a column")
        self.key = key
        self.indexes = [tuple(_column(self, c) for c in index) for index in indexes]
        self.handlers: dict[str, Handler] = {}
        self._names = frozenset(self.columns)

    @property
    def event_types(self) -> frozenset[str]:
        """The event types this projection handles."""
        return frozenset(self.handlers)

    def on(self, event_type: str | type[Event]) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler for `event_type`."""
        type_name = event_type if isinstance(event_type, str) else event_type.type_name

        def register(handler: Handler) -> Handler:
            if type_name in self.handlers:
                raise ConfigError(f"projection {self.name}: two handlers for {type_name}")
            self.handlers[type_name] = handler
            return handler

        return register

    def apply(self, row: Row | None, event: RecordedEvent) -> Row | None:
        """The new row for `event`, or None when the row does not change."""
        handler = self.handlers.get(event.type)
        if handler is None:
            return None
        new = handler(row, event)
        if new is not None:
            if new.keys() != self._names:
                raise ProjectionError(
                    f"handler for {event.type} returned columns {sorted(new)},"
                    f" expected {sorted(self.columns)}"
                )
            columns = self.columns
            for column, value in new.items():
                kind = columns[column]
                if type(value) is kind and (kind is str or kind is bool or _is_int64(value)):
                    continue  # the usual case, checked without a call per column
                self._check_value(column, value)
        return new

    def _check_value(self, column: str, value: Any) -> None:
        """A value the column can hold and every client can read back: the declared type
        (None only where declared `T | None`), integers in 64 bits, finite floats."""
        kind = self.columns[column]
        if value is None:
            if column in self.nullable:
                return
        elif kind is int and isinstance(value, int):
            if -(2**63) <= value < 2**63:
                return
        elif kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                return
        elif isinstance(value, kind):
            return
        raise ProjectionError(f"column {column} cannot hold {_shown(value)} ({kind.__name__})")


def _is_int64(value: Any) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _base(kind: Any) -> Any:
    """`str` for `str | None` (a nullable column), the kind itself otherwise."""
    arguments = get_args(kind)
    if get_origin(kind) in (Union, UnionType) and len(arguments) == 2 and type(None) in arguments:
        return next(a for a in arguments if a is not type(None))
    return kind


def _identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} is not a valid name: use lower case, digits and _")
    return name


def _column(projection: Projection, column: str) -> str:
    if column not in projection.columns:
        raise ConfigError(f"projection {projection.name}: index on unknown column {column!r}")
    return column
