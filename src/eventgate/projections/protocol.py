"""The read store port: what every read-model backend (SQLite, PostgreSQL) provides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from eventgate.errors import ProjectionError
from eventgate.eventstore.model import RecordedEvent
from eventgate.hub.hub import Delivery
from eventgate.projections.changes import RecordChanged
from eventgate.projections.parking import ParkedStream
from eventgate.projections.projection import Projection, Row

__all__ = ["KnownProjections", "ReadStore"]


class KnownProjections:
    """What every read store keeps in memory: its projections by name, and the streams each
    has parked as this process last applied it."""

    def __init__(self, projections: Iterable[Projection]) -> None:
        self.projections = {p.name: p for p in projections}
        self._parked: dict[str, set[str]] = {name: set() for name in self.projections}

    def projection(self, name: str) -> Projection:
        """The projection called `name`, or a ProjectionError naming the known ones."""
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise ProjectionError(f"no projection named {name!r} (known: {known})") from None

    def parked(self, projection: str) -> frozenset[str]:
        """The streams `projection` has parked, as this process last applied it."""
        return frozenset(self._parked.get(projection, ()))


class ReadStore(Protocol):
    """Read models keyed by stream id, each with a checkpoint that moves only with its
    changes (compare-and-set), and the streams each has parked (checked by tests/contract)."""

    @property
    def projections(self) -> Mapping[str, Projection]:
        """The projections this store keeps, by name."""
        ...

    def projection(self, name: str) -> Projection:
        """The projection called `name`, or a ProjectionError naming the known ones."""
        ...

    async def load_checkpoint(self, name: str) -> int: ...

    async def save_checkpoint(self, name: str, position: int) -> None: ...

    async def marks(self) -> dict[str, tuple[int, int]]:
        """Each read model's (checkpoint, changes): `changes` counts every committed change
        (apply, retry or skip, reset), so another process can tell that anything changed."""
        ...

    async def apply(self, projection: Projection, delivery: Delivery) -> list[RecordChanged]:
        """Apply `delivery` and move the checkpoint from `delivery.after`, in one transaction;
        StaleCheckpoint when the checkpoint is elsewhere."""
        ...

    async def apply_all(
        self, deliveries: Sequence[tuple[Projection, Delivery]]
    ) -> list[list[RecordChanged]]:
        """`apply` for several projections (each at most once) in one transaction: all or
        nothing, StaleCheckpoint when any checkpoint is elsewhere; the changes of each."""
        ...

    async def reset(self, projection: Projection) -> None:
        """Empty the read model, its parked streams and its checkpoint, in one transaction."""
        ...

    def parked(self, projection: str) -> frozenset[str]:
        """The streams `projection` has parked, as this process last applied it."""
        ...

    async def reload_parked(self, projection: str) -> None: ...

    async def parked_streams(self, projection: str | None = None) -> list[ParkedStream]: ...

    async def request(self, projection: str, stream_id: str | None, kind: str) -> int: ...

    async def requested(self) -> list[ParkedStream]: ...

    async def retry(
        self, projection: Projection, stream_id: str, events: list[RecordedEvent], skip: bool
    ) -> list[RecordChanged]: ...

    async def get(self, projection: Projection, key: str) -> Row | None: ...

    async def select(
        self,
        projection: Projection,
        where: str,
        parameters: tuple[Any, ...],
        order_by: str,
        limit: int,
    ) -> list[Row]:
        """Rows matching `where` (constant SQL of the caller with `?` placeholders; every
        value goes through `parameters`), in `order_by`, at most `limit`."""
        ...

    async def rows(self, projection: Projection) -> list[Row]: ...

    async def close(self) -> None: ...
