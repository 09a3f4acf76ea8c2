"""The domain: message bases, the aggregate base and the reference inventory model."""

from __future__ import annotations

from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event

__all__ = ["Aggregate", "Command", "Event"]
