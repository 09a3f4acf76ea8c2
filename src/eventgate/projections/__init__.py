"""The upsert service: projections, their read store and the change feed."""

from __future__ import annotations

from eventgate.projections.changes import ChangeFeed, RecordChanged
from eventgate.projections.projection import Projection, Row
from eventgate.projections.readstore import SQLiteReadStore
from eventgate.projections.service import ProjectionStatus, UpsertService

__all__ = [
    "ChangeFeed",
    "Projection",
    "ProjectionStatus",
    "RecordChanged",
    "Row",
    "SQLiteReadStore",
    "UpsertService",
]
