"""Which exporter the OpenTelemetry environment turns on, the clear refusals, and the trace
context an event keeps."""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from eventgate.errors import ConfigError
from eventgate.tracing.setup import _exporter, _sampler
from eventgate.tracing.spans import carried, propagated


def test_tracing_is_off_unless_an_endpoint_or_exporter_is_configured() -> None:
    assert _exporter({}) is None
    assert _exporter({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) is None
    off = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert _exporter(off) is None


def test_an_endpoint_exports_over_otlp_http_and_its_password_is_never_shown() -> None:
    found = _exporter({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:secret@collector:4318"})
    assert found is not None
    exporter, shown = found
    assert isinstance(exporter, OTLPSpanExporter)
    assert "secret" not in shown and "collector:4318" in shown
    console = _exporter({"OTEL_TRACES_EXPORTER": "console"})
    assert console is not None and isinstance(console[0], ConsoleSpanExporter)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
         "OTLP over HTTP"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "use otlp or console"),
    ],
)  # fmt: skip
def test_an_exporter_eventgate_does_not_ship_is_refused_clearly(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _exporter(environ)


def test_an_events_trace_context_keeps_a_short_tracestate_and_drops_a_huge_one() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for state, kept in (
        ("vendor=abc", True),
        (",".join(f"k{n}={'v' * 200}" for n in range(30)), False),
    ):
        context = propagated({"traceparent": parent, "tracestate": state})
        assert context is not None
        token = otel_context.attach(context)
        try:
            found = carried()
        finally:
            otel_context.detach(token)
        assert found["traceparent"] == parent
        assert ("tracestate" in found) is kept
    assert propagated({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert propagated({"traceparent": "not a trace"}) is None


@pytest.mark.parametrize(
    "metadata",
    [
        {"traceparent": 5},
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": 5},
        {"traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]},
        {"traceparent": None, "tracestate": {"a": 1}},
    ],
)
def test_metadata_of_any_shape_never_makes_tracing_raise(metadata: dict[str, object]) -> None:
    """Events on the broker or in a copied store may carry anything: a runner must not stall."""
    found = propagated(metadata)
    if found is not None:  # a good traceparent with a bad tracestate: the parent is kept
        assert metadata["tracestate"] == 5


def test_a_configured_ratio_decides_by_trace_id_whatever_the_clients_flag() -> None:
    sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    unsampled = sampled[:-2] + "00"
    for ratio, want in (("0", False), ("1", True)):
        sampler = _sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                            "OTEL_TRACES_SAMPLER_ARG": ratio})  # fmt: skip
        tracer = TracerProvider(sampler=sampler).get_tracer("t")
        for parent in (sampled, unsampled):
            span = tracer.start_span("GET", context=propagated({"traceparent": parent}))
            assert span.is_recording() is want, (ratio, parent)
    assert _sampler({}) is None  # the SDK's own choice
    with pytest.raises(ConfigError, match="ratio from 0 to 1"):
        _sampler({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                  "OTEL_TRACES_SAMPLER_ARG": "ten"})  # fmt: skip
