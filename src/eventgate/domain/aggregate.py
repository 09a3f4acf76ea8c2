"""The aggregate base: decide on commands, record events, rebuild from history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Self

from eventgate.domain.messages import Command, Event

__all__ = ["Aggregate"]


class Aggregate:
    """A consistency boundary whose state is the fold of its events.

    Subclasses implement `handle` (check the rules, raise or `record`) and `apply`
    (assign state only, so replaying history can never fail), the m-r split. Its events
    carry `type_name` (the class name unless set), so a command for one kind of aggregate
    never runs on another kind's stream.
    """

    type_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self._pending: list[Event] = []

    @property
    def exists(self) -> bool:
        """Whether any event has been recorded for this aggregate."""
        return self.version > 0

    @classmethod
    def replay(cls, id: str, history: Iterable[Event]) -> Self:
        """Rebuild an aggregate from its stored events, oldest first."""
        aggregate = cls(id)
        for event in history:
            aggregate.apply(event)
            aggregate.version += 1
        return aggregate

    def handle(self, command: Command) -> None:
        """Decide on `command`: raise a DomainError, or `record` zero or more events."""
        raise NotImplementedError

    def apply(self, event: Event) -> None:
        """Assign the state that `event` implies; never raise for a stored event."""
        raise NotImplementedError

    def record(self, event: Event) -> None:
        """Apply a new event now and keep it for the next append."""
        self.apply(event)
        self.version += 1
        self._pending.append(event)

    def collect_pending(self) -> list[Event]:
        """Hand over the events recorded since the last collection."""
        pending, self._pending = self._pending, []
        return pending
