"""Traces through events, with the OpenTelemetry SDK's in-memory exporter: one trace from a
client's POST through the command, the append, the read models and the saga's invocations,
and the commands the saga sends, each span a child of what caused it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from eventgate.bootstrap import HTTPSystem, function_worker, open_http
from eventgate.config import Settings
from eventgate.examples.orders import orders_app
from eventgate.examples.orders.functions import order_saga
from eventgate.gateway.config import GatewayConfig
from eventgate.health.logs import AccessLog
from eventgate.tracing.http import Traced
from eventgate.tracing.spans import enable
from tests.integration.test_functions import until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable(provider)
    try:
        yield exporter
    finally:
        enable(None)
        provider.shutdown()


@contextlib.asynccontextmanager
async def orders_running(data: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The orders app behind its gateway (traced as `eventgate up` serves it), with the
    upsert service and the saga running."""
    http: HTTPSystem = await open_http(Settings(data_dir=data), GatewayConfig(), orders_app())
    worker = function_worker(http.system, [order_saga], heartbeat=0.05, ttl=2.0)
    tasks = [asyncio.create_task(http.system.upsert.run()), asyncio.create_task(worker.run())]
    front = Traced(AccessLog(http.gateway))
    transport = httpx.ASGITransport(app=front)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://eventgate") as client:
            yield client
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()


def by_id(found: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span_id(s): s for s in found}


def parent_of(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent else None


def ancestors(span: ReadableSpan, known: dict[str, ReadableSpan]) -> list[str]:
    """The names of the spans above `span`, nearest first, up to the client's."""
    names, parent = [], parent_of(span)
    while parent in known:
        names.append(known[parent].name)
        parent = parent_of(known[parent])
    names.append(parent or "")
    return names


async def test_one_trace_runs_from_the_post_through_the_saga_and_the_commands_it_sends(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    item, order = str(uuid.uuid4()), str(uuid.uuid4())
    async with orders_running(tmp_path) as client:
        created = await client.post("/api/inventory-items", json={"id": item, "name": "book"})
        assert created.status_code == 202, created.text
        stocked = await client.post(
            f"/api/inventory-items/{item}",
            json={"count": 5},
            headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory"},
        )
        assert stocked.status_code == 202, stocked.text
        placed = await client.post(
            "/api/orders?api_key=not-for-traces",
            json={"id": order, "lines": [{"item": item, "count": 2}]},
            headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"},
        )
        assert placed.status_code == 202, placed.text
        status = (await client.get(placed.json()["links"]["status"])).json()
        assert status["traceId"] == TRACE  # what to look up in the tracing backend

        def confirmed() -> bool:
            return any(
                s.name == "command RecordReservation"
                and s.attributes is not None
                and s.attributes.get("eventgate.events") == 2  # OrderLineReserved, OrderConfirmed
                for s in spans.get_finished_spans()
            )

        await until(confirmed, within=20)
        await asyncio.sleep(0.3)  # the saga's run on the confirmation, and the read models'
    everything = spans.get_finished_spans()
    traced = [s for s in everything if s.context and format_trace_id(s.context.trace_id) == TRACE]
    known = by_id(tuple(traced))
    [server] = [s for s in traced if s.kind == SpanKind.SERVER]
    assert server.name == "POST /api/orders" and parent_of(server) == CLIENT_SPAN
    assert "not-for-traces" not in str(dict(server.attributes or {}))
    [place] = [s for s in traced if s.name == "command PlaceOrder"]
    assert ancestors(place, known) == ["POST /api/orders", CLIENT_SPAN]
    projected = [s for s in traced if s.name.startswith("project ")]
    assert projected and all(parent_of(s) in known for s in projected)
    [first] = [s for s in traced if parent_of(s) == span_id(place) and s.name.startswith("func")]
    assert first.name == "function order_saga"
    sent = sorted(s.name for s in traced if parent_of(s) == span_id(first))
    assert sent == ["command RecordReservation", "command RemoveItemsFromInventory"]
    [report] = [s for s in traced if s.name == "command RecordReservation"]
    [then] = [s for s in traced if parent_of(s) == span_id(report) and s.name.startswith("func")]
    assert ancestors(then, known) == [
        "command RecordReservation",
        "function order_saga",
        "command PlaceOrder",
        "POST /api/orders",
        CLIENT_SPAN,
    ]
    assert {"project order_details", "project inventory_item_details"} <= {s.name for s in traced}
    started_here = {format_trace_id(s.context.trace_id) for s in everything if s.context}
    assert len(started_here) == 4  # and the creation, check-in and status GET: a new one each


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_span_id(span.context.span_id)
