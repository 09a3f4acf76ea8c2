"""A connection to NATS JetStream with the app's stream and state bucket in place."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import unquote

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

import nats
from eventgate.broker.wire import Layout
from eventgate.config import redact
from eventgate.errors import EventgateError

__all__ = ["DUPLICATE_WINDOW", "Broker", "BrokerError", "open_broker"]

log = logging.getLogger("eventgate.broker")

DUPLICATE_WINDOW = 120.0
"""Seconds JetStream remembers a `Nats-Msg-Id` and drops a second message with it."""


START_ATTEMPTS = 3
"""Tries to reach the broker at start before giving up with one line (a wrong URL fails fast)."""


class BrokerError(EventgateError):
    """The broker cannot be reached or refused what eventgate asked of it."""


@dataclass
class Broker:
    """One NATS connection, its JetStream context and where the app's events live."""

    url: str
    client: Client
    js: JetStreamContext
    layout: Layout
    state: KeyValue
    """Small durable values of the app on the broker: the relay's checkpoint, the leases of
    partitions among function workers."""

    async def close(self) -> None:
        """Send what is buffered (acks, naks) if the server is there, then close. Not a
        drain: that waits for every pull request to expire. With the server gone, nats-py's
        close writes what it buffered to the closed socket and raises (nats-py 2.16); what
        was not sent is redelivered, so that is no error of ours."""
        try:
            if self.client.is_connected:
                await self.client.flush(timeout=2)
        except Exception as e:  # the server is gone: what was not sent is redelivered
            log.debug("flushing the broker connection: %s", e)
        try:
            await self.client.close()
        except (OSError, RuntimeError) as e:
            log.debug("closing the broker connection: %s", e)

    async def last_event(self) -> tuple[int, str] | None:
        """The store position and id of the last event in the app's stream; None when the
        stream holds none (never had one, or limits removed them all)."""
        info = await self.js.stream_info(self.layout.stream)
        if info.state.messages == 0:
            return None
        try:
            message = await self.js.get_msg(self.layout.stream, info.state.last_seq)
        except NotFoundError:  # removed between the two requests
            return None
        headers = message.headers or {}
        return int(headers.get("ce-sequence", 0)), unquote(headers.get("ce-id", ""))


async def open_broker(url: str, layout: Layout, name: str = "eventgate") -> Broker:
    """Connect, and create the app's stream and state bucket if they do not exist."""
    errors: list[str] = []

    async def note(e: Exception) -> None:  # at start, the one-line error below says it
        errors.append(str(e) or type(e).__name__)
        if client_ready.is_set():
            log.warning("broker %s: %s", redact(url), e)

    client_ready = asyncio.Event()

    try:
        client = await nats.connect(
            servers=[url],
            name=name,
            connect_timeout=3,
            allow_reconnect=True,
            max_reconnect_attempts=START_ATTEMPTS,
            reconnect_time_wait=0.5,
            error_cb=note,
        )
    except Exception as e:
        reason = errors[-1] if errors else str(e) or type(e).__name__
        raise BrokerError(f"cannot reach the broker at {redact(url)}: {reason}") from None
    # Once connected, reconnect for ever: a broker restart must not stop a process. (The
    # option is read on every reconnect; nats-py has no separate one for the first connect.)
    client.options["max_reconnect_attempts"] = -1
    client_ready.set()
    js = client.jetstream(timeout=10)
    try:
        await _ensure_stream(js, layout)
        state = await js.create_key_value(
            bucket=f"{layout.stream}_STATE", history=1, storage=StorageType.FILE
        )
    except Exception as e:
        await client.close()
        raise BrokerError(f"the broker at {redact(url)} refused the app's stream: {e}") from None
    return Broker(url, client, js, layout, state)


async def _ensure_stream(js: JetStreamContext, layout: Layout) -> None:
    config = StreamConfig(
        name=layout.stream,
        subjects=[layout.subjects],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW,
        description=f"eventgate: every event of app {layout.app}, in the store's order",
    )
    try:
        info = await js.stream_info(layout.stream)
    except NotFoundError:
        await js.add_stream(config)
        return
    if info.config.subjects != config.subjects:
        try:
            await js.update_stream(config)
        except BadRequestError as e:
            raise BrokerError(f"stream {layout.stream} exists with other settings: {e}") from e
