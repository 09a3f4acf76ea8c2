"""The one exception tree of eventgate; each edge (HTTP, CLI) maps it to its own answers.

EventgateError
├── DomainError                  a command broke the domain's rules
│   ├── InvalidCommand           a value is malformed or out of range      (HTTP 422)
│   └── RuleViolation            valid, but the current state forbids it  (HTTP 409)
├── AggregateNotFound            the command targets a stream that has no events (404)
├── AggregateAlreadyExists       a creating command targets an existing stream  (409)
├── ConcurrencyError             the stream is not at the expected version      (412)
├── EventStoreError              the store cannot serve the request
│   ├── UnknownEventType         a stored type name no codec or upcaster knows
│   └── DuplicateEvent           an appended event id is already stored
├── ProjectionError              a projection cannot be applied or rebuilt
│   └── StaleCheckpoint          another runner moved the checkpoint first
├── DeadLetterNotFound           no dead letter has that id                      (404)
└── ConfigError                  bad settings, found at start-up
"""

from __future__ import annotations

__all__ = [
    "AggregateAlreadyExists",
    "AggregateNotFound",
    "ConcurrencyError",
    "ConfigError",
    "DeadLetterNotFound",
    "DomainError",
    "DuplicateEvent",
    "EventStoreError",
    "EventgateError",
    "InvalidCommand",
    "ProjectionError",
    "RuleViolation",
    "StaleCheckpoint",
    "UnknownEventType",
]


class EventgateError(Exception):
    """Base of every error eventgate raises on purpose."""


class DomainError(EventgateError):
    """A command broke a rule of the domain."""


class InvalidCommand(DomainError):
    """A command carries a malformed or out-of-range value."""


class RuleViolation(DomainError):
    """A command is well-formed, but the aggregate's current state forbids it."""


class AggregateNotFound(EventgateError):
    """A command targets an aggregate that was never created."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no aggregate with id {stream_id!r}")
        self.stream_id = stream_id


class AggregateAlreadyExists(EventgateError):
    """A creating command targets an id that is already taken."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"an aggregate with id {stream_id!r} already exists")
        self.stream_id = stream_id


class ConcurrencyError(EventgateError):
    """A stream is not at the version the writer expected; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, not the expected {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class EventStoreError(EventgateError):
    """The event store cannot serve a request (closed, corrupt or misused)."""


class UnknownEventType(EventStoreError):
    """A stored event names a type or schema version that nothing can decode."""


class DuplicateEvent(EventStoreError):
    """An append carries an event id that is already stored; nothing of it was written."""


class ProjectionError(EventgateError):
    """A projection cannot be applied, rebuilt or found."""


class StaleCheckpoint(ProjectionError):
    """The stored checkpoint is not where this runner left it; it must reload and resume."""


class DeadLetterNotFound(EventgateError):
    """No dead letter has the given id (it was replayed successfully, or discarded)."""

    def __init__(self, letter_id: int) -> None:
        super().__init__(f"no dead letter {letter_id}")
        self.letter_id = letter_id


class ConfigError(EventgateError):
    """Settings are invalid; raised at start-up, never later."""
