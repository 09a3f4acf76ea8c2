"""What a function author writes against: `@function`, the event it gets, explicit outcomes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from eventgate.errors import ConfigError
from eventgate.functions.context import Context
from eventgate.functions.model import DeadLetter, FunctionEvent, Retry
from eventgate.hub.hub import TypeFilter

__all__ = ["DeadLetter", "Function", "FunctionEvent", "Handler", "Retry", "function"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")


Handler = Callable[[FunctionEvent, Context], Awaitable[None]]


@dataclass(frozen=True, eq=False)
class Function:
    """A registered function and how it is run. Calling it calls the handler, for tests."""

    name: str
    handler: Handler
    on: tuple[str, ...]
    retries: int = 3
    timeout: float = 30.0
    concurrency: int = 1
    max_age: float | None = None
    backoff: float = 0.5
    max_backoff: float = 60.0
    triggers: TypeFilter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"function name {self.name!r} must match {_NAME.pattern}")
        object.__setattr__(self, "triggers", TypeFilter(self.on))
        checks = [
            (self.retries >= 0, "retries must be >= 0"),
            (self.timeout > 0, "timeout must be positive"),
            (1 <= self.concurrency <= 1000, "concurrency must be from 1 to 1000"),
            (self.max_age is None or self.max_age > 0, "max_age must be positive"),
            (0 < self.backoff <= self.max_backoff, "need 0 < backoff <= max_backoff"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"function {self.name}: {message}")

    def wants(self, type_name: str) -> bool:
        """Whether events of this type trigger the function."""
        return self.triggers(type_name)

    async def __call__(self, event: FunctionEvent, ctx: Context) -> None:
        await self.handler(event, ctx)


def function(
    *,
    on: Sequence[str],
    retries: int = 3,
    timeout: float = 30.0,
    concurrency: int = 1,
    max_age: float | None = None,
    backoff: float = 0.5,
    max_backoff: float = 60.0,
    name: str | None = None,
) -> Callable[[Handler], Function]:
    """Register an async `fn(event, ctx)` to run for every event whose type matches `on`.

    `retries` more attempts after the first; `timeout` seconds per attempt; `concurrency`
    streams at once (one stream's events always run one at a time, in order); events
    older than `max_age` seconds are dead-lettered unrun; retries wait
    `backoff * 2**(attempt-1)` seconds (capped by `max_backoff`) with jitter.
    """
    if isinstance(on, str):
        on = [on]

    def register(handler: Handler) -> Function:
        return Function(
            name=name or handler.__name__,
            handler=handler,
            on=tuple(on),
            retries=retries,
            timeout=timeout,
            concurrency=concurrency,
            max_age=max_age,
            backoff=backoff,
            max_backoff=max_backoff,
        )

    return register
