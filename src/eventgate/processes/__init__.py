"""The processes of a deployment: who runs, their heartbeats, and who holds which lease."""

from eventgate.processes.membership import Membership
from eventgate.processes.registry import (
    PostgresProcessRegistry,
    ProcessRecord,
    ProcessRegistry,
    SQLiteProcessRegistry,
)

__all__ = [
    "Membership",
    "PostgresProcessRegistry",
    "ProcessRecord",
    "ProcessRegistry",
    "SQLiteProcessRegistry",
]
