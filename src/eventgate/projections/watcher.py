"""Read-model changes made by other processes, brought onto this process's change feed.

A query service whose projections run elsewhere (another `serve projections` process, or
a lease held by another `up`) must still empty its cache, learn which streams are parked
and wake its consistency waits. On PostgreSQL it LISTENs to the notifications the read
store sends in each committing transaction (projections/postgres.py); while that
connection is down, and on SQLite, it polls each read model's change counter (moved by
every apply, retry, skip and reset): a view whose counter moved counts as changed
everywhere. Each (re)connection starts with a poll, so what was committed while nobody
listened is not missed either. Views whose projection runs in this very process (`local`)
are left out of polling: their changes are already on the feed, row by row.

A database that goes away (and comes back) never stops the watcher: it logs one warning
when notifications or polls start failing and one line when they work again, whatever
asyncpg raises meanwhile (a ping that lands between a shutting-down server's FATAL and the
connection's end raises InternalClientError, outside asyncpg's other error classes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

import asyncpg

from eventgate.projections.changes import ALL_ROWS, ChangeFeed, RecordChanged
from eventgate.projections.postgres import CHANNEL, ReadModelNotice
from eventgate.projections.protocol import ReadStore

__all__ = ["ReadModelWatcher"]

_log = logging.getLogger(__name__)
SAFETY_POLL = 1.0
"""Seconds between polls while notifications flow (a dead connection can go unnoticed)."""
PING_TIMEOUT = 2.0
"""Seconds the listening connection may take to answer a ping before it counts as dead."""
RECONNECT_AFTER = 2.0
"""Seconds of polling before trying to LISTEN again."""
CONNECTION_LOST = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                   asyncpg.InternalClientError)  # fmt: skip
"""What asyncpg raises when the server is unreachable, restarting or gone mid-query."""


class _Outage:
    """One warning when something starts failing, one line when it works again."""

    def __init__(self, failing: str, back: str) -> None:
        self._failing = failing
        self._back = back
        self.down = False

    def failed(self, error: BaseException) -> None:
        if not self.down:
            _log.warning("%s (%s)", self._failing, str(error) or type(error).__name__)
        self.down = True

    def works(self) -> None:
        if self.down:
            _log.info(self._back)
        self.down = False


class ReadModelWatcher:
    """Publishes other processes' read-model changes on `feed`; `run` until cancelled."""

    def __init__(
        self,
        read_store: ReadStore,
        feed: ChangeFeed,
        *,
        database_url: str | None = None,
        poll_interval: float = 0.1,
        local: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._store = read_store
        self._feed = feed
        self._url = database_url
        self._interval = poll_interval
        self._local = local
        self._seen: dict[str, int] = {}
        self._notices: asyncio.Queue[ReadModelNotice] = asyncio.Queue()
        self.listening = False
        """True while notifications are being received (False: polling)."""
        self._notifications = _Outage(
            "read-model notifications lost; polling until PostgreSQL answers again",
            "read-model notifications received again",
        )
        self._polls = _Outage(
            "cannot read the read-model checkpoints; retrying until they answer",
            "read-model checkpoints read again",
        )

    async def run(self) -> None:
        while True:
            if self._url is not None:
                try:
                    await self._listen(self._url)
                except CONNECTION_LOST as e:
                    self._notifications.failed(e)
                self.listening = False
            await self._poll_for(RECONNECT_AFTER if self._url is not None else None)

    async def poll(self) -> None:
        """Publish a change to every row of each view changed since the last poll (all of
        them, the first time), but those whose projection runs in this process."""
        local = self._local()
        for name, (checkpoint, changes) in (await self._store.marks()).items():
            if name not in self._store.projections or self._seen.get(name) == changes:
                continue
            self._seen[name] = changes
            if name in local:
                continue
            await self._store.reload_parked(name)
            change = RecordChanged(name, ALL_ROWS, checkpoint)
            await self._feed.publish(name, checkpoint, [change])

    async def _poll_for(self, seconds: float | None) -> None:
        loop = asyncio.get_running_loop()
        until = None if seconds is None else loop.time() + seconds
        while until is None or loop.time() < until:
            try:
                await self.poll()
            except Exception as e:
                self._polls.failed(e)
            else:
                self._polls.works()
            await asyncio.sleep(self._interval)

    async def _listen(self, url: str) -> None:
        connection = await asyncpg.connect(url)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._received)
            self.listening = True
            await self.poll()  # whatever committed before the LISTEN took effect
            self._notifications.works()
            self._polls.works()
            while not lost.is_set() and not connection.is_closed():
                try:
                    async with asyncio.timeout(SAFETY_POLL):
                        await self._publish(await self._notices.get())
                except TimeoutError:
                    # raises if the server is gone, or silent (a partition sends no reset)
                    await connection.execute("SELECT 1", timeout=PING_TIMEOUT)
                    await self.poll()
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=1)

    def _received(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        try:
            self._notices.put_nowait(ReadModelNotice.parse(str(payload)))
        except (ValueError, KeyError, TypeError):
            _log.warning("ignoring a malformed read-model notification")

    async def _publish(self, notice: ReadModelNotice) -> None:
        view = notice.view
        if view not in self._store.projections:
            return  # a read model of another app sharing the database
        previous = self._seen.get(view)
        missed = previous is not None and notice.changes > previous + 1
        self._seen[view] = max(previous or 0, notice.changes)
        if (notice.parked or missed) and view not in self._local():
            await self._store.reload_parked(view)
        keys = [ALL_ROWS] if notice.keys is None or missed else notice.keys
        changes = [RecordChanged(notice.view, key, notice.position) for key in keys]
        await self._feed.publish(notice.view, notice.position, changes)
