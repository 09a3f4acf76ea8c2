"""The domain: message bases and the aggregate base."""

from __future__ import annotations

from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event

__all__ = ["Aggregate", "Command", "Event"]
