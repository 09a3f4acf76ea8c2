"""Parked streams: the events a projection could not apply, kept in order per stream.

When a projection's handler fails on an event (or returns a row its columns cannot hold),
that event's stream is parked for that projection: the event and every later event of the
same stream are recorded here, in log order, instead of being applied, while every other
stream keeps flowing and the checkpoint moves on. An operator asks for a `retry` (after a
fix) or a `skip` (of the first parked event); the upsert service applies the parked events
in order and unparks the stream when all of them went through. See
docs/decisions/0002-a-poison-event-parks-its-stream.md.

These functions run on the read store's writer thread, inside its transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from eventgate.eventstore.model import RecordedEvent
from eventgate.sqlitefile import in_chunks

__all__ = [
    "PARKED_SCHEMA",
    "RETRY",
    "SKIP",
    "ParkedStream",
    "park",
    "parked_positions",
    "parked_streams",
    "request",
    "requested",
    "unpark",
]

RETRY = "retry"
SKIP = "skip"

PARKED_SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_parked (
    projection TEXT NOT NULL,
    stream_id  TEXT NOT NULL,
    position   INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    error      TEXT,
    parked_at  TEXT NOT NULL,
    request    TEXT CHECK (request IN ('retry', 'skip')),
    PRIMARY KEY (projection, position)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS projection_parked__stream
    ON projection_parked (projection, stream_id, position);
"""


@dataclass(frozen=True)
class ParkedStream:
    """One stream a projection has parked: its first parked event, why, and how many wait."""

    projection: str
    stream_id: str
    position: int
    event_type: str
    error: str
    events: int
    parked_at: str
    request: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "projection": self.projection,
            "stream": self.stream_id,
            "position": self.position,
            "type": self.event_type,
            "error": self.error,
            "events": self.events,
            "parkedAt": self.parked_at,
            "request": self.request,
        }


def park(
    connection: sqlite3.Connection, projection: str, event: RecordedEvent, error: str | None
) -> None:
    """Record `event` as parked (`error` for the one that failed, None for one behind it)."""
    connection.execute(
        "INSERT OR IGNORE INTO projection_parked"
        " (projection, stream_id, position, event_type, error, parked_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (projection, event.stream_id, event.position, event.type, error, _now()),
    )


def parked_streams(connection: sqlite3.Connection, projection: str | None) -> list[ParkedStream]:
    """Every parked stream (of `projection`, or of all), by projection then first position."""
    where, parameters = ("WHERE projection = ?", (projection,)) if projection else ("", ())
    rows = connection.execute(
        "SELECT projection, stream_id, MIN(position), COUNT(*) FROM projection_parked"
        f" {where} GROUP BY projection, stream_id ORDER BY projection, MIN(position)",
        parameters,
    ).fetchall()
    found = []
    for name, stream, first, count in rows:
        event_type, error, parked_at, wanted = connection.execute(
            "SELECT event_type, error, parked_at, request FROM projection_parked"
            " WHERE projection = ? AND position = ?",
            (name, first),
        ).fetchone()
        found.append(
            ParkedStream(name, stream, first, event_type, error or "", count, parked_at, wanted)
        )
    return found


def parked_among(connection: sqlite3.Connection, projection: str, keys: Iterable[str]) -> set[str]:
    """Which of the streams `keys` `projection` has parked, as the table says now."""
    found: set[str] = set()
    any_parked = "SELECT 1 FROM projection_parked WHERE projection = ? LIMIT 1"
    if connection.execute(any_parked, (projection,)).fetchone() is None:
        return found  # the usual case, in one lookup instead of one per 500 keys
    for chunk, marks in in_chunks(keys):
        rows = connection.execute(
            f"SELECT DISTINCT stream_id FROM projection_parked WHERE projection = ?"
            f" AND stream_id IN ({marks})",
            (projection, *chunk),
        )
        found.update(stream for (stream,) in rows)
    return found


def parked_positions(connection: sqlite3.Connection, projection: str, stream_id: str) -> list[int]:
    """The positions of a parked stream's events, oldest first."""
    rows = connection.execute(
        "SELECT position FROM projection_parked WHERE projection = ? AND stream_id = ?"
        " ORDER BY position",
        (projection, stream_id),
    ).fetchall()
    return [row[0] for row in rows]


def request(
    connection: sqlite3.Connection, projection: str, stream_id: str | None, kind: str
) -> int:
    """Ask for a retry or skip of one parked stream (or all of `projection`'s); returns how
    many streams it names."""
    streams = [p.stream_id for p in parked_streams(connection, projection)]
    chosen = [s for s in streams if stream_id is None or s == stream_id]
    for stream in chosen:
        connection.execute(
            "UPDATE projection_parked SET request = ? WHERE projection = ? AND position ="
            " (SELECT MIN(position) FROM projection_parked WHERE projection = ? AND stream_id = ?)",
            (kind, projection, projection, stream),
        )
    return len(chosen)


def requested(connection: sqlite3.Connection) -> list[ParkedStream]:
    """The parked streams an operator asked to retry or skip."""
    return [p for p in parked_streams(connection, None) if p.request is not None]


def unpark(
    connection: sqlite3.Connection,
    projection: str,
    done: list[int],
    failed: tuple[int, str] | None,
) -> None:
    """Drop the parked events at positions `done` (applied or skipped); mark the one that
    `failed` again with its new error, and clear the request either way."""
    connection.executemany(
        "DELETE FROM projection_parked WHERE projection = ? AND position = ?",
        [(projection, position) for position in done],
    )
    if failed is not None:
        position, error = failed
        connection.execute(
            "UPDATE projection_parked SET error = ?, request = NULL"
            " WHERE projection = ? AND position = ?",
            (error, projection, position),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
