"""Tracing from the standard OpenTelemetry environment: on when an OTLP endpoint (or the
console exporter) is configured, off otherwise.

    OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT   where to send (HTTP)
    OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, ...         read by the exporter
    OTEL_SERVICE_NAME                  default eventgate-<role> (eventgate-gateway, ...)
    OTEL_TRACES_SAMPLER(_ARG)          read by the SDK (default: parent-based, always on);
                                       parentbased_traceidratio decides by trace id alone
    OTEL_TRACES_EXPORTER=console       print spans on stdout instead; `none` turns tracing off
    OTEL_SDK_DISABLED=true             off, whatever else is set

Spans leave in a background thread (the SDK's BatchSpanProcessor), never on the event loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from eventgate.config import redact
from eventgate.errors import ConfigError
from eventgate.tracing.spans import enable, provider

__all__ = ["configure", "shutdown"]

_log = logging.getLogger("eventgate.tracing")
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def _exporter(environ: Mapping[str, str]) -> tuple[SpanExporter, str] | None:
    """The exporter the environment asks for and where it sends, or None (tracing off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    chosen = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = next((environ[name] for name in _ENDPOINTS if environ.get(name)), None)
    if chosen not in ("", "otlp", "console", "none"):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={chosen} is not supported: use otlp or console")
    if chosen == "console":
        return ConsoleSpanExporter(), "stdout"
    if chosen == "none" or (endpoint is None and chosen != "otlp"):
        return None
    protocol = next((environ[name] for name in _PROTOCOLS if environ.get(name)), "http/protobuf")
    if protocol != "http/protobuf":
        raise ConfigError(
            f"OTLP protocol {protocol} is not supported: eventgate exports OTLP over HTTP"
            " (http/protobuf); point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP"
            " port (4318 by default)"
        )
    return OTLPSpanExporter(), redact(endpoint or "http://localhost:4318")


def _sampler(environ: Mapping[str, str]) -> Sampler | None:
    """With a ratio configured, the ratio decides for a remote parent too (a client's
    `traceparent`, an event's metadata), by the trace id, as it does for a new trace: a
    client's sampled flag can neither force tracing on under load nor hide its requests,
    and every process keeps or drops the same whole traces. Else the SDK's choice (None)."""
    if environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() != "parentbased_traceidratio":
        return None
    given = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        ratio = float(given)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1, not {given!r}")
    by_id = TraceIdRatioBased(ratio)
    return ParentBased(by_id, remote_parent_sampled=by_id, remote_parent_not_sampled=by_id)


def configure(role: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Start tracing this process as `role` if the environment asks for it; whether it does."""
    found = _exporter(environ)
    if found is None:
        return False
    exporter, target = found
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {"service.name": f"eventgate-{role}"}
    chosen = TracerProvider(resource=Resource.create(attributes), sampler=_sampler(environ))
    chosen.add_span_processor(BatchSpanProcessor(exporter))
    enable(chosen)
    service = chosen.resource.attributes.get("service.name")
    _log.info("tracing: spans of %s go to %s", service, target)
    return True


def shutdown() -> None:
    """Send the spans still queued and stop tracing (a clean stop loses none)."""
    chosen = provider()
    if chosen is not None:
        enable(None)
        chosen.shutdown()
