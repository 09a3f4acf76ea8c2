"""Group commit for small durable writes: what concurrent callers submit while a write is
under way goes into the next one, so N callers pay for one commit (one fsync), not N."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["GroupWriter"]

T = TypeVar("T")


class GroupWriter(Generic[T]):
    """`await submit(item)` returns once a `write(items)` that carried the item succeeded, and
    raises what that write raised. Writes run one at a time, at most `max_batch` items each.
    A caller cancelled while waiting does not take its item back: it is written anyway."""

    def __init__(self, write: Callable[[list[T]], Awaitable[object]], max_batch: int = 500):
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flusher is None or self._flusher.done():
            # its own context: not the request's that happened to start it (logs, traces)
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._write([item for item, _ in batch])
            except BaseException as error:  # each caller gets the write's outcome
                failure = error if isinstance(error, Exception) else RuntimeError(repr(error))
                if not isinstance(error, Exception):  # cancelled: nothing more will be written
                    batch, self._pending = batch + self._pending, []
                for _, done in batch:
                    if not done.done():
                        done.set_exception(failure)
                if not isinstance(error, Exception):
                    raise
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
