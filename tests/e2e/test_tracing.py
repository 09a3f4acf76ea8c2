"""Traces across processes and across the broker, exported over OTLP/HTTP to a real receiver:
a client's POST through `serve gateway` and `serve commands`, the read models updated in
`serve projections`, the saga run in `serve functions` and the commands it sends, all one
trace; and the same with the functions consuming from NATS JetStream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import Component, Deployment, Server
from tests.otlp_receiver import ReceivedSpan, TraceReceiver
from tests.postgres import database_for

ORDERS = ("--app", "eventgate.examples.orders:app")
TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[TraceReceiver]:
    found = TraceReceiver().start()
    yield found
    found.stop()


def traced_env(receiver: TraceReceiver) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}


def place_an_order(client: httpx.Client) -> None:
    """Stock an item (untraced by the client), then order from it with a client trace."""
    item, order = str(uuid.uuid4()), str(uuid.uuid4())
    assert client.post("/api/inventory-items", json={"id": item, "name": "pen"}).status_code == 202
    stocked = client.post(
        f"/api/inventory-items/{item}",
        json={"count": 3},
        headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory"},
    )
    assert stocked.status_code == 202, stocked.text
    placed = client.post(
        "/api/orders",
        json={"id": order, "lines": [{"item": item, "count": 1}]},
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
    )
    assert placed.status_code == 202, placed.text


def wait_for_the_saga(receiver: TraceReceiver) -> list[ReceivedSpan]:
    """The trace once the saga's second step (on the reservation it recorded) is in."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        spans = receiver.of_trace(TRACE)
        by_id = {s.span_id: s for s in spans}
        steps = [s for s in spans if s.name == "function order_saga"]
        if any(by_id.get(s.parent_id, s).name == "command RecordReservation" for s in steps):
            return spans
        time.sleep(0.2)
    raise AssertionError(f"the saga's second step never arrived: {receiver.of_trace(TRACE)}")


SAGA_STEPS = [
    ("eventgate-functions", "function order_saga"),  # on the reservation it recorded
    ("eventgate-functions", "command RecordReservation"),
    ("eventgate-functions", "function order_saga"),  # on OrderPlaced
]


def saga_lineage(spans: list[ReceivedSpan]) -> list[tuple[str, str]]:
    """The lineage of the saga's step on the reservation it recorded (the first such span:
    a redelivery would continue the trace too)."""
    steps = [s for s in spans if s.name == "function order_saga"]
    second = next(s for s in steps if lineage(s, spans)[1][1] == "command RecordReservation")
    return lineage(second, spans)


def lineage(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[tuple[str, str]]:
    """(service, name) of `span` and every span above it, up to the client's span id."""
    by_id = {s.span_id: s for s in spans}
    found = [(span.service, span.name)]
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append((span.service, span.name))
    found.append(("client", span.parent_id))
    return found


def test_one_trace_spans_the_gateway_services_projections_and_functions_processes(
    tmp_path: Path, postgres_dsn: str, receiver: TraceReceiver
) -> None:
    url = asyncio.run(database_for(postgres_dsn, str(tmp_path), "tr"))
    env = traced_env(receiver)
    deployment = Deployment(tmp_path / "data", "--database-url", url, *ORDERS, env=env).start()
    try:
        with deployment.client() as client:
            place_an_order(client)
        spans = wait_for_the_saga(receiver)
    finally:
        deployment.stop()
    assert saga_lineage(spans) == [
        *SAGA_STEPS,
        ("eventgate-commands", "command PlaceOrder"),
        ("eventgate-commands", "POST /api/orders"),
        ("eventgate-gateway", "POST /api/orders"),
        ("client", CLIENT_SPAN),
    ]
    projected = {(s.service, s.name) for s in spans if s.name.startswith("project ")}
    assert ("eventgate-projections", "project order_details") in projected
    [placed] = [s for s in spans if s.name == "command PlaceOrder"]
    assert placed.attributes["eventgate.stream"] and placed.attributes["eventgate.events"] == 1


def test_the_trace_crosses_the_broker_to_a_functions_process(
    tmp_path: Path, nats_server: object, receiver: TraceReceiver
) -> None:
    broker = ["--broker", nats_server.url]  # type: ignore[attr-defined]
    env = traced_env(receiver)
    data = tmp_path / "data"
    server = Server(data, *ORDERS, *broker, "--no-functions", env=env).start()
    functions = Component("functions", ["--data", str(data), *ORDERS, *broker],
                          {**server.env}).start()  # fmt: skip
    try:
        with server.client() as client:
            place_an_order(client)
        spans = wait_for_the_saga(receiver)
    finally:
        functions.stop()
        server.stop()
    assert saga_lineage(spans) == [
        *SAGA_STEPS,
        ("eventgate-up", "command PlaceOrder"),
        ("eventgate-up", "POST /api/orders"),
        ("client", CLIENT_SPAN),
    ]
