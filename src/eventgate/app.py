"""An application definition: the explicit list of what a service is made of."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command, Event
from eventgate.errors import ConfigError
from eventgate.eventstore.upcasting import Upcasters
from eventgate.projections.projection import Projection

__all__ = ["App"]


@dataclass(frozen=True)
class App:
    """What a developer hands eventgate: commands routed to aggregates, the events they
    record, the read models fed by those events, and upcasters for old event versions."""

    name: str
    commands: Mapping[type[Command], type[Aggregate]]
    events: Sequence[type[Event]]
    projections: Sequence[Projection] = ()
    upcasters: Upcasters = field(default_factory=Upcasters)

    def __post_init__(self) -> None:
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            raise ConfigError(f"app {self.name}: two projections share a name")
        known = {e.type_name for e in self.events}
        for projection in self.projections:
            unknown = projection.event_types - known
            if unknown:
                raise ConfigError(
                    f"projection {projection.name} handles unknown events {sorted(unknown)}"
                )
