"""Folding events into read-model rows, the same on every read store: pure, no database.

`fold` turns a delivery into new rows and the events to park; `replay_parked` re-applies a
parked stream's events for a retry or skip. A store loads the rows these need, calls them,
and writes what they return in one transaction with the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from eventgate.errors import ProjectionError
from eventgate.eventstore.model import RecordedEvent
from eventgate.projections.projection import Projection, Row

__all__ = ["Folded", "Replayed", "apply_one", "fold", "replay_parked"]

_log = logging.getLogger("eventgate.projections")


@dataclass
class Folded:
    """What a delivery does: new rows by key (each with the `_position` of the event that
    last changed it), and the events to park with the error of the one that failed."""

    changed: dict[str, Row] = field(default_factory=dict)
    parked: list[tuple[RecordedEvent, str | None]] = field(default_factory=list)


@dataclass
class Replayed:
    """What a retry did: the row to store (or None), the parked positions it applied or
    skipped, and the one that failed again with its error."""

    row: Row | None = None
    done: list[int] = field(default_factory=list)
    failed: tuple[int, str] | None = None


def apply_one(projection: Projection, current: Row | None, event: RecordedEvent) -> Row | None:
    """The projection's new row for `event` (None: unchanged), checked to fit its columns."""
    if current is not None:
        current = _bare(current)
    return _applied(projection, current, event)


def _applied(projection: Projection, bare: Row | None, event: RecordedEvent) -> Row | None:
    """`apply_one` of a row that has no `_position`."""
    new = projection.apply(bare, event)
    if new is not None and new[projection.key] != event.stream_id:
        raise ProjectionError(
            f"a row for stream {event.stream_id!r} must keep {projection.key} = {event.stream_id!r}"
        )
    return new


def _bare(row: Row) -> Row:
    """`row` without its `_position`, as handlers see rows."""
    return {c: v for c, v in row.items() if c != "_position"}


def fold(
    projection: Projection,
    events: Iterable[RecordedEvent],
    stored: Mapping[str, Row],
    parked: set[str],
) -> Folded:
    """Apply `events` to the `stored` rows. Events of streams in `parked` are parked; a
    stream whose event fails now is added to `parked` (the caller keeps the set only if
    its transaction commits)."""
    folded = Folded()
    rows: dict[str, Row | None] = {}  # each stream's row so far, without `_position`
    changed: dict[str, tuple[Row, int]] = {}  # new rows, with the event that made each
    for event in events:
        key = event.stream_id
        if key in parked:
            folded.parked.append((event, None))
            continue
        if key in rows:
            current = rows[key]
        else:
            found = stored.get(key)
            current = rows[key] = None if found is None else _bare(found)
        try:
            new = _applied(projection, current, event)
        except Exception as e:  # a user's handler: any error parks the stream, logged
            error = f"{type(e).__name__}: {e}"
            _log.warning("%s parks stream %s at %d: %s", projection.name, key,
                         event.position, error)  # fmt: skip
            folded.parked.append((event, error))
            parked.add(key)
            continue
        if new is not None:
            rows[key] = new
            changed[key] = (new, event.position)
    folded.changed = {key: {**row, "_position": at} for key, (row, at) in changed.items()}
    return folded


def replay_parked(
    projection: Projection,
    current: Row | None,
    positions: list[int],
    events: Mapping[int, RecordedEvent],
    skip: bool,
) -> Replayed:
    """Apply the parked events at `positions` (oldest first) to `current`, the first one
    skipped if `skip`; stop at one that fails again, or at one not in `events` (appended
    after they were read: the next pass takes it)."""
    replayed = Replayed()
    for position in positions:
        event = events.get(position)
        if event is None:
            break
        if skip and not replayed.done:
            replayed.done.append(position)
            continue
        try:
            new = apply_one(projection, replayed.row or current, event)
        except Exception as e:  # a user's handler, as in fold
            replayed.failed = (position, f"{type(e).__name__}: {e}")
            break
        replayed.done.append(position)
        if new is not None:
            replayed.row = {**new, "_position": position}
    return replayed
