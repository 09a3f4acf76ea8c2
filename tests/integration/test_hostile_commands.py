"""Whatever a client sends, an accepted command yields events every read model can apply.

Hypothesis sends random bodies (huge and negative numbers, numeric strings, floats, odd text,
nulls, nesting) to every command of every resource of the shipped apps, in random order on
one aggregate: each is refused at the edge (400/422), refused by the domain (4xx), or
accepted; every event of every accepted command must then apply cleanly to every projection
of the app (no parked stream can come from client input alone).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventgate import App, Command, EventgateError, RecordedEvent
from eventgate.domain.messages import camel_case
from eventgate.examples.inventory import inventory_app
from eventgate.examples.orders import app as orders_app
from eventgate.http.problems import HTTPProblem
from eventgate.resources.bodies import decode_command

scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=10**9 + 3),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.from_regex(r"\A-?[0-9]{1,20}\Z"),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def hostile(kind: Any) -> st.SearchStrategy[Any]:
    """Values aimed at a field of type `kind`: mostly of its type (edge values included),
    sometimes of any type at all."""
    origin, arguments = get_origin(kind), get_args(kind)
    if origin is Annotated:
        return hostile(arguments[0])
    if kind is int:
        aimed = st.one_of(
            st.integers(min_value=1, max_value=1000),
            st.integers(min_value=-3, max_value=10**9 + 3),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.from_regex(r"\A-?[0-9]{1,20}\Z"),
            st.floats(allow_nan=False, allow_infinity=False),
        )
    elif kind is str:
        uuids = st.uuids().map(str)
        aimed = st.one_of(st.text(max_size=40), uuids, uuids, st.text(min_size=190))
    elif isinstance(kind, type) and dataclasses.is_dataclass(kind):
        aimed = bodies(kind)
    elif origin in (list, tuple):
        aimed = st.lists(hostile(arguments[0]), max_size=4)
    else:
        aimed = values
    return st.one_of(aimed, aimed, aimed, values)


def bodies(kind: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = get_type_hints(kind, include_extras=True)
    names = [f.name for f in dataclasses.fields(kind) if f.name != "id"]
    return st.fixed_dictionaries({camel_case(n): hostile(hints[n]) for n in names})


def resource_commands(app: App) -> list[type[Command]]:
    return list(dict.fromkeys(c for resource in app.resources for c in resource.commands()))


def check(app: App, sent: list[tuple[type[Command], dict[str, Any]]]) -> None:
    stream = str(uuid.uuid4())
    history: list[RecordedEvent] = []
    rows: dict[str, dict[str, Any] | None] = {p.name: None for p in app.projections}
    for kind, body in sent:
        try:
            raw = json.dumps({**body, "id": stream}).encode()
            command = decode_command(kind, raw, stream,
                                     creates=kind.creates)  # fmt: skip
            aggregate = app.commands[kind].replay(stream, (_event(app, e) for e in history))
            if kind.creates and aggregate.exists:
                continue
            aggregate.handle(command)
        except (HTTPProblem, EventgateError):
            continue
        for event in aggregate.collect_pending():
            recorded = RecordedEvent(
                id=str(uuid.uuid4()), stream_id=stream, stream_version=len(history) + 1,
                position=len(history) + 1, type=event.type_name, schema_version=1,
                time=datetime.now(UTC), data=orjson.loads(orjson.dumps(event.to_data())),
                metadata={},
            )  # fmt: skip
            history.append(recorded)
            for projection in app.projections:
                new = projection.apply(rows[projection.name], recorded)  # must not raise
                rows[projection.name] = new if new is not None else rows[projection.name]


def _event(app: App, recorded: RecordedEvent) -> Any:
    kind = next(e for e in app.events if e.type_name == recorded.type)
    return kind.from_data(recorded.data)


def sequences(app: App) -> st.SearchStrategy[list[tuple[type[Command], dict[str, Any]]]]:
    """A creating command, then up to 8 more commands for the same kind of aggregate."""
    commands = resource_commands(app)
    kinds = sorted({app.commands[c] for c in commands}, key=lambda k: k.__name__)

    def of(aggregate: type) -> st.SearchStrategy[list[tuple[type[Command], dict[str, Any]]]]:
        own = [c for c in commands if app.commands[c] is aggregate]
        step = st.sampled_from(own).flatmap(lambda c: st.tuples(st.just(c), bodies(c)))
        creating = [c for c in own if c.creates]
        first = st.sampled_from(creating).flatmap(lambda c: st.tuples(st.just(c), bodies(c)))
        return st.tuples(first, st.lists(step, max_size=8)).map(lambda t: [t[0], *t[1]])

    return st.sampled_from(kinds).flatmap(of)


HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@HOSTILE
@given(sequences(inventory_app()))
def test_no_inventory_command_yields_an_event_its_read_models_cannot_apply(
    sent: list[tuple[type[Command], dict[str, Any]]],
) -> None:
    check(inventory_app(), sent)


@HOSTILE
@given(sequences(orders_app))
def test_no_orders_command_yields_an_event_its_read_models_cannot_apply(
    sent: list[tuple[type[Command], dict[str, Any]]],
) -> None:
    check(orders_app, sent)
