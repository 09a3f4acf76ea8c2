"""Which exporter the OpenTelemetry environment turns on, and the clear refusals."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from eventgate.errors import ConfigError
from eventgate.tracing.setup import _exporter


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
