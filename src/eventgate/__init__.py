"""eventgate: event-driven API services on CQRS, event sourcing, an event hub and projections."""

from __future__ import annotations

from eventgate.app import App
from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event
from eventgate.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    ConcurrencyError,
    ConfigError,
    DomainError,
    EventgateError,
    EventStoreError,
    InvalidCommand,
    ProjectionError,
    RuleViolation,
)
from eventgate.eventstore.model import NewEvent, RecordedEvent
from eventgate.eventstore.upcasting import Upcasters
from eventgate.functions import Context, DeadLetter, Function, FunctionEvent, Retry, function
from eventgate.projections.projection import Projection, Row
from eventgate.resources import ItemView, ListView, Resource

__all__ = [
    "Aggregate",
    "AggregateAlreadyExists",
    "AggregateNotFound",
    "App",
    "Command",
    "ConcurrencyError",
    "ConfigError",
    "Context",
    "DeadLetter",
    "DomainError",
    "Event",
    "EventStoreError",
    "EventgateError",
    "Function",
    "FunctionEvent",
    "InvalidCommand",
    "ItemView",
    "ListView",
    "NewEvent",
    "Projection",
    "ProjectionError",
    "RecordedEvent",
    "Resource",
    "Retry",
    "Row",
    "RuleViolation",
    "Upcasters",
    "function",
]
