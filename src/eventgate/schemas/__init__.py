"""The event schema registry: each event type's JSON Schema per schema version, the released
file that `eventgate schemas check` compares the code with, and the AsyncAPI document."""

from __future__ import annotations

from eventgate.schemas.compatibility import breaking_changes
from eventgate.schemas.generate import DRAFT, current_schemas, event_schema
from eventgate.schemas.released import Released, default_location, read_released, write_released

__all__ = [
    "DRAFT",
    "Released",
    "breaking_changes",
    "current_schemas",
    "default_location",
    "event_schema",
    "read_released",
    "write_released",
]
