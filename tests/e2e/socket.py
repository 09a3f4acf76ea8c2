"""A test client of the event stream's WebSocket (`GET /api/events/ws`), over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from websockets.sync.client import ClientConnection, connect

PROTOCOL = "eventgate.events.v1"
PATH = "/api/events/ws"


class EventSocket:
    """One connection; `send` a message, `next` the server's next one (parsed). Messages
    read past while waiting for an answer are kept for `next`, in order."""

    def __init__(
        self, base_url: str, query: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        url = base_url.replace("http", "ws", 1) + PATH + (f"?{query}" if query else "")
        self.connection: ClientConnection = connect(
            url, subprotocols=[PROTOCOL], additional_headers=dict(headers or {}),  # type: ignore[list-item]
            open_timeout=10, max_size=2**22,
        ).__enter__()  # fmt: skip
        self.kept: list[dict[str, Any]] = []

    def __enter__(self) -> EventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def send(self, **message: Any) -> None:
        self.connection.send(json.dumps(message))

    def raw(self, data: str | bytes) -> None:
        self.connection.send(data)

    def next(self) -> dict[str, Any]:
        if self.kept:
            return self.kept.pop(0)
        message: dict[str, Any] = json.loads(self.connection.recv(timeout=20))
        return message

    def subscribe(self, subscription: str, **options: Any) -> None:
        """Subscribe, and take the `subscribed` answer (events of others before it are kept)."""
        self.send(type="subscribe", subscription=subscription, **options)
        self.answer({"type": "subscribed", "subscription": subscription})

    def answer(self, expected: dict[str, Any]) -> None:
        """Read up to the next message that is not an event: it must be `expected`."""
        read: list[dict[str, Any]] = []
        while True:
            message = json.loads(self.connection.recv(timeout=20))
            if message["type"] != "event":
                break
            read.append(message)
        self.kept += read
        assert message == expected

    def events(self, wanted: Mapping[str, int]) -> dict[str, list[dict[str, Any]]]:
        """The CloudEvents of each subscription, until each has `wanted[id]` of them; any
        other message (or an event of another subscription) fails."""
        got: dict[str, list[dict[str, Any]]] = {sid: [] for sid in wanted}
        while any(len(got[sid]) < n for sid, n in wanted.items()):
            message = self.next()
            assert message["type"] == "event" and message["subscription"] in got, message
            got[message["subscription"]].append(message["event"])
        return got
