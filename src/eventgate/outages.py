"""A database that is away, told apart from a failure: a 503 rather than a 500, and one log
line a minute rather than a stack trace per retry.

While PostgreSQL restarts (or is unreachable) every part of a process retries on its own
schedule: pools reconnecting, heartbeats, projections, function readers, the read-model
watcher. Each failure is expected and says the same thing, so `OutageLogFilter` logs the
first of each kind without its traceback and holds back its repeats for QUIET seconds
(the next one says how many were held back). Other failures are logged as they come.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

import asyncpg

__all__ = ["QUIET", "OutageLogFilter", "unreachable"]

QUIET = 60.0
"""Seconds during which repeats of one outage line are held back."""
_UNREACHABLE = (
    ConnectionError,  # refused, reset, aborted (a full disk is an OSError too, and no outage)
    TimeoutError,
    socket.gaierror,  # the host's name does not resolve (now)
    asyncpg.PostgresConnectionError,  # the connection ended mid-query
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,  # "connection is closed" (not its subclasses: see _NOT)
    asyncpg.InternalClientError,  # a query sent between the server's FATAL and the close
)
_NOT = (
    asyncpg.exceptions.DataError,  # an argument the driver cannot encode: our bug
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
    asyncpg.exceptions.UnsupportedServerFeatureError,
)


def unreachable(error: BaseException | None) -> bool:
    """Whether `error`, or an error that caused it, says the database cannot be reached (an
    error raised `from None` keeps its own meaning, whatever it was raised while handling)."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, _UNREACHABLE) and not isinstance(error, _NOT):
            return True
        context = None if error.__suppress_context__ else error.__context__
        error, seen = error.__cause__ or context, seen + 1
    return False


class OutageLogFilter(logging.Filter):
    """Logs an unreachable database once per QUIET seconds per line, without traceback."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = _error_of(record)
        if not unreachable(error):
            return True
        key = (record.name, record.msg)
        now = self._clock()
        last, held = self._last.get(key, (None, 0))
        if last is not None and now - last < QUIET:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (now, 0)
        message = record.getMessage()
        if record.exc_info is not None:
            message = f"{message} ({_reason(error)})"
        if held:
            message += f" [{held} more like it in the last {QUIET:g} s]"
        record.msg, record.args = message, None
        record.exc_info = record.exc_text = None
        return True


def _error_of(record: logging.LogRecord) -> BaseException | None:
    """The exception a record is about: its exc_info, else an exception among its args."""
    if record.exc_info is not None and record.exc_info[1] is not None:
        return record.exc_info[1]
    args = record.args if isinstance(record.args, tuple) else ()
    return next((a for a in args if isinstance(a, BaseException)), None)


def _reason(error: BaseException | None) -> str:
    return "" if error is None else str(error) or type(error).__name__
