"""How many event streams each consumer holds, so one cannot take every slot of a process.

A stream is an SSE connection or a WebSocket subscription (a WebSocket connection with no
subscription counts as one: it holds a client slot too). The consumer is the name the
gateway forwards in CONSUMER_HEADER; a request without it (auth off: everyone is anonymous)
is held only to the process's client limit, since all its clients would be one consumer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from eventgate.http.forwarded import CONSUMER_HEADER

__all__ = ["MAX_STREAMS_PER_CONSUMER", "StreamQuota", "consumer_of"]

MAX_STREAMS_PER_CONSUMER = 100
_CONSUMER = CONSUMER_HEADER.encode()


class StreamQuota:
    """At most `limit` streams held by each named consumer at once."""

    def __init__(self, limit: int = MAX_STREAMS_PER_CONSUMER) -> None:
        self.limit = limit
        self._held: Counter[str] = Counter()

    def refusal(self, consumer: str | None) -> str | None:
        """Why `consumer` may not open one more stream now (fits a close frame's reason),
        or None if it may."""
        if consumer is None or self._held[consumer] < self.limit:
            return None
        held = f"this consumer holds {self.limit} event streams"
        return held + " (SSE connections, WebSocket subscriptions), the most one may"

    def hold(self, consumer: str | None, count: int = 1) -> None:
        if consumer is not None and count:
            self._held[consumer] += count

    def release(self, consumer: str | None, count: int = 1) -> None:
        if consumer is not None and count:
            self._held[consumer] -= count
            if self._held[consumer] <= 0:
                del self._held[consumer]

    def held(self, consumer: str) -> int:
        return self._held[consumer]


def consumer_of(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The consumer the gateway named in a request's (or handshake's) headers."""
    for name, value in headers:
        if name == _CONSUMER:
            return value.decode("latin-1")
    return None
