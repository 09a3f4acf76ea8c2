"""The one place that turns domain events into stored events and back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from eventgate.domain.messages import Event
from eventgate.errors import ConfigError, UnknownEventType
from eventgate.eventstore.model import NewEvent, RecordedEvent

__all__ = ["EventCodec"]


class EventCodec:
    """Maps stable type names to event classes; refuses anything it cannot decode exactly."""

    def __init__(self, events: Iterable[type[Event]]) -> None:
        self._classes: dict[str, type[Event]] = {}
        for cls in events:
            if cls.type_name in self._classes:
                raise ConfigError(f"two event classes are stored as {cls.type_name!r}")
            self._classes[cls.type_name] = cls

    @property
    def type_names(self) -> frozenset[str]:
        """Every type name this codec decodes."""
        return frozenset(self._classes)

    def encode(self, event: Event, metadata: Mapping[str, Any] | None = None) -> NewEvent:
        """The stored form of `event`, at its class's current schema version."""
        return NewEvent(
            type=event.type_name,
            data=event.to_data(),
            metadata=dict(metadata or {}),
            schema_version=event.schema_version,
        )

    def decode(self, recorded: RecordedEvent) -> Event:
        """The domain event of a stored one (which the store has already upcast)."""
        cls = self._classes.get(recorded.type)
        if cls is None:
            raise UnknownEventType(f"no event class is registered for {recorded.type!r}")
        if recorded.schema_version != cls.schema_version:
            raise UnknownEventType(
                f"{recorded.type} is stored at schema version {recorded.schema_version} but the"
                f" code is at {cls.schema_version}; register an upcaster for the missing step"
            )
        try:
            return cls.from_data(recorded.data)
        except TypeError as e:
            raise UnknownEventType(f"{recorded.type} data does not fit its class: {e}") from e
