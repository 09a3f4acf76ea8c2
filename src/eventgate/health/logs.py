"""Logs: text for a terminal, JSON (one object a line) for a log pipeline.

Every line has time, level, logger and message. A line logged while a request is handled
also carries its request id, its correlation id (the request id: it is the correlationId of
the events the request records) and, when it is traced (or the client sent a W3C
`traceparent`), its trace id; a function invocation's lines carry the trace id of the
request that caused its event. The context travels in contextvars, so tasks a request
starts carry it too. In JSON
mode, AccessLog adds one line per request (method, path, route, status, duration). Nothing
secret reaches a line: no header is logged, a path is logged without its query (where an
`api_key` may be), and a password in a URL inside any message is masked.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import uuid_utils
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.errors import ConfigError
from eventgate.outages import OutageLogFilter

__all__ = [
    "LOG_FORMATS",
    "LOG_FORMAT_ENV",
    "AccessLog",
    "correlation_id",
    "log_format",
    "logs_json",
    "request_id",
    "setup_logging",
]

LOG_FORMATS = ("text", "json")
LOG_FORMAT_ENV = "EVENTGATE_LOG_FORMAT"
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)
_CONTEXT = (("request_id", request_id), ("correlation_id", correlation_id))
_REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")  # as the gateway accepts one
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
_log = logging.getLogger("eventgate.access")


def log_format(option: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """`--log-format`, else EVENTGATE_LOG_FORMAT, else text."""
    chosen = (option or environ.get(LOG_FORMAT_ENV) or "text").lower()
    if chosen not in LOG_FORMATS:
        raise ConfigError(f"log format must be text or json, not {chosen!r}")
    return chosen


class _RequestContext(logging.Filter):
    """Puts the request's ids on the record (when there is a request) and masks passwords."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            value = var.get()
            if value is not None:
                setattr(record, name, value)
        traced = trace.get_current_span().get_span_context()
        if traced.is_valid:
            record.trace_id = trace.format_trace_id(traced.trace_id)
        if isinstance(record.msg, str) and "://" in record.getMessage():
            record.msg, record.args = _URL_PASSWORD.sub(r"\1***@", record.getMessage()), None
        return True


def logs_json() -> bool:
    """Whether this process logs JSON (the CLI keeps its choice in the environment)."""
    return os.environ.get(LOG_FORMAT_ENV) == "json"


def setup_logging(chosen: str = "text", level: int = logging.INFO) -> None:
    """Root logging to stderr in `chosen` format (text or json), replacing earlier setup."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(OutageLogFilter())  # a database away: a line a minute, no traceback
    handler.addFilter(_RequestContext())
    if chosen == "json":
        handler.setFormatter(JsonFormatter(
            "{levelname}{name}{message}", style="{", timestamp="time",
            rename_fields={"levelname": "level", "name": "logger"},
        ))  # fmt: skip
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class AccessLog:
    """`app`, run with the request's context set (a request without a valid X-Request-ID
    gets one here, which the gateway and the command API then use); `access`: also log one
    line per HTTP request."""

    def __init__(self, app: ASGIApp, *, access: bool = False) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(_REQUEST_ID_HEADER, b"").decode("latin-1")
        if not _VALID_REQUEST_ID.match(given):
            given = str(uuid_utils.uuid4())
            kept = [(k, v) for k, v in scope["headers"] if k != _REQUEST_ID_HEADER]
            scope = {**scope, "headers": [*kept, (_REQUEST_ID_HEADER, given.encode())]}
        tokens = [(request_id, request_id.set(given)), (correlation_id, correlation_id.set(given))]
        try:
            if self._access and scope["type"] == "http":
                await self._logged(scope, receive, send)
            else:
                await self._app(scope, receive, send)
        finally:
            for var, token in reversed(tokens):
                var.reset(token)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what a client sees when the app fails before answering

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, watched)
        finally:
            _log.info("%s %s %d", scope["method"], scope["path"], status,
                      extra=_access_fields(scope, status, started))  # fmt: skip


def _access_fields(scope: Scope, status: int, started: float) -> dict[str, Any]:
    route = scope.get("route")
    fields: dict[str, Any] = {"method": scope["method"], "path": scope["path"], "status": status}
    fields["route"] = getattr(route, "path", None) or scope["path"]
    fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return fields
