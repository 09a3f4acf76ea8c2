"""One attempt of a function on an event, and what follows a failure: shared by the runner
that reads the store and the one that consumes from the broker."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from eventgate.functions.api import DeadLetter, Function, FunctionEvent, Retry
from eventgate.functions.context import Context, Services
from eventgate.functions.model import Hold
from eventgate.metrics.families import (
    FUNCTION_DEAD_LETTERED,
    FUNCTION_FAILURES,
    FUNCTION_INVOCATIONS,
    FUNCTION_SECONDS,
)
from eventgate.tracing import spans as tracing

__all__ = ["Failure", "backoff", "hold", "invoke", "park", "surely", "too_old"]

T = TypeVar("T")

log = logging.getLogger("eventgate.functions")


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed; `delay`: the function asked for this wait; `final`: no retry;
    `held`: neither a retry nor a dead letter (Hold)."""

    error_type: str
    message: str
    delay: float | None = None
    final: bool = False
    held: bool = False


async def invoke(function: Function, ctx: Context) -> Failure | None:
    """Run one attempt within the function's timeout; its failure, or None. Counted and
    timed (metrics/families.py) whichever runner calls it, the store's or the broker's, and
    traced as a child of the span that recorded the event."""
    started = time.perf_counter()
    traced = {"eventgate.function": function.name, "eventgate.attempt": ctx.attempt}
    with tracing.event_span(f"function {function.name}", ctx.event, traced) as span:
        failure = await _attempt(function, ctx)
        if failure is not None:
            tracing.failed(span, failure.error_type, failure.message)
    FUNCTION_SECONDS.labels(function.name).observe(time.perf_counter() - started)
    FUNCTION_INVOCATIONS.labels(function.name).inc()
    if failure is not None:
        FUNCTION_FAILURES.labels(function.name).inc()
    return failure


async def _attempt(function: Function, ctx: Context) -> Failure | None:
    try:
        async with asyncio.timeout(function.timeout):
            await function(ctx.event, ctx)
    except Retry as e:
        return Failure("Retry", str(e), e.delay)
    except DeadLetter as e:
        return Failure("DeadLetter", e.reason, final=True)
    except Hold as e:
        return Failure("Hold", str(e), held=True)
    except TimeoutError:
        return Failure("Timeout", f"no result within {function.timeout:g} s")
    except Exception as e:
        return Failure(type(e).__qualname__, str(e)[:2000] or repr(e))
    return None


async def hold(function: Function, event: FunctionEvent, failure: Failure) -> None:
    """Wait, the event unfinished, until the runner is stopped (cancelled)."""
    log.info("%s: event %s (stream %s) held until the function is stopped: %s",
             function.name, event.id, event.stream_id, failure.message)  # fmt: skip
    await asyncio.Future()


async def surely(function: str, what: str, step: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`step(*args)`, tried again every second (at most) until it succeeds: a step an
    event's outcome depends on (a dead letter, an ack) while the database or broker is
    away. The lane waits with its events, so nothing of its stream overtakes them."""
    pause = 0.1
    while True:
        try:
            return await step(*args)
        except Exception as e:
            log.warning("%s: %s failed (%r); again in %.1f s", function, what, e, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


def too_old(function: Function, event: FunctionEvent, replay: bool) -> Failure | None:
    """The failure of an event past the function's `max_age` (an operator's replay always
    runs), or None."""
    if function.max_age is None or replay:
        return None
    age = (datetime.now(UTC) - event.time).total_seconds()
    if age <= function.max_age:
        return None
    return Failure("EventTooOld", f"event is {age:.1f} s old; max_age is {function.max_age:g} s")


def backoff(function: Function, attempt: int) -> float:
    """Exponential, capped, with "equal jitter": between half and all of the step."""
    step = min(function.max_backoff, function.backoff * 2 ** (attempt - 1))
    return random.uniform(step / 2, step)


async def park(
    services: Services,
    function: Function,
    partition: int,
    event: FunctionEvent,
    failure: Failure,
    attempts: int,
    first: datetime | None,
) -> None:
    """Put `event` in the dead-letter store of `function`, and say so in the log."""
    await services.functions.dead_letter(
        function.name,
        partition,
        event,
        (failure.error_type, failure.message),
        attempts,
        first or datetime.now(UTC),
    )
    FUNCTION_DEAD_LETTERED.labels(function.name).inc()
    log.error(
        "%s: event %s (%s, stream %s) dead-lettered after %d attempt(s): %s: %s",
        function.name,
        event.id,
        event.type,
        event.stream_id,
        attempts,
        failure.error_type,
        failure.message,
    )
