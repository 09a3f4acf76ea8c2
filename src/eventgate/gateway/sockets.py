"""A WebSocket through `serve gateway`: the client's connection relayed to a service's.

The gateway opens the connection to the service first (aiohttp, the upstream's pooled
session; the base URLs tried in turn, as a handshake applies nothing), then accepts the
client's with the subprotocol the service chose, and copies messages both ways until
either side closes; the close code and reason go through. A refusal of the handshake by the
service is passed on as a problem with its status (401: the internal token, a 502). The
slow-client rule holds here too: a message the client does not take within `send_timeout`
closes the client's connection with 1008 and the service's with it, so a gateway never
holds more than one message per connection. Close codes of its own: 1014 (bad gateway,
IANA) when the service's connection breaks without a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aiohttp
from multidict import CIMultiDict
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from yarl import URL

from eventgate.http.problems import problem
from eventgate.streaming.websocket import MAX_EVENT

__all__ = ["relay_socket"]

_log = logging.getLogger(__name__)
_HANDSHAKE = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
              "sec-websocket-protocol")  # fmt: skip
"""aiohttp makes these of its own for the service's handshake."""
MAX_MESSAGE = MAX_EVENT
"""Bytes of one message from the service: as many as an event message may have (the
service sends an error for a bigger event; the client's own messages are capped by uvicorn)."""
TOO_SLOW, BAD_GATEWAY = 1008, 1014
_UNSENDABLE = {1005, 1006, 1015}
"""Codes that say no close frame came: never sent in one."""


async def relay_socket(
    client: aiohttp.ClientSession,
    urls: Sequence[str],
    target: str,
    headers: CIMultiDict[str],
    scope: Scope,
    receive: Receive,
    send: Send,
    send_timeout: float,
) -> None:
    """Relay the WebSocket of `scope` to `target` on the first of `urls` that takes it."""
    if (await receive())["type"] != "websocket.connect":
        return
    for name in _HANDSHAKE:
        headers.popall(name, None)
    service, refusal = await _connect(client, urls, target, headers, scope, send_timeout)
    if service is None:
        assert refusal is not None
        await refusal(scope, receive, send)
        return
    try:
        await send({"type": "websocket.accept", "subprotocol": service.protocol})
        tasks = [asyncio.create_task(_to_service(receive, service)),
                 asyncio.create_task(_to_client(service, send, send_timeout))]  # fmt: skip
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if tasks[0] in done and tasks[0].exception() is not None:  # the service's side broke
            await _close(send, BAD_GATEWAY, "the service behind the gateway went away")
    finally:
        await service.close()


async def _connect(
    client: aiohttp.ClientSession,
    urls: Sequence[str],
    target: str,
    headers: CIMultiDict[str],
    scope: Scope,
    close_within: float,
) -> tuple[aiohttp.ClientWebSocketResponse | None, Response | None]:
    """The service's connection, or the answer to give the client instead."""
    failure = problem(502, "the service behind the gateway cannot be reached")
    for url in urls:
        try:
            service = await client.ws_connect(
                URL(url.replace("http", "ws", 1) + target, encoded=True),
                headers=headers,
                protocols=scope.get("subprotocols") or (),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=close_within),
                max_msg_size=MAX_MESSAGE,
                autoping=True,
            )
        except aiohttp.WSServerHandshakeError as e:
            if e.status == 401:  # the services answer 401 to a wrong internal token only
                _log.error("%s refused the gateway's WebSocket: is EVENTGATE_INTERNAL_TOKEN"
                           " the same for every process?", url)  # fmt: skip
                return None, problem(502, "the service behind the gateway refused it")
            return None, problem(e.status, "the service behind the gateway refused the WebSocket")
        except TimeoutError:
            failure = problem(504, "the service behind the gateway did not answer in time")
            _log.warning("WebSocket: %s did not answer in time", url)
        except aiohttp.ClientError as e:
            _log.warning("WebSocket: %s unreachable (%s)", url, str(e) or type(e).__name__)
        else:
            return service, None
    return None, failure


async def _to_service(receive: Receive, service: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1000)
            await service.close(code=1000 if code in _UNSENDABLE else code)
            return
        if message.get("text") is not None:
            await service.send_str(message["text"])
        elif message.get("bytes") is not None:
            await service.send_bytes(message["bytes"])


async def _to_client(
    service: aiohttp.ClientWebSocketResponse, send: Send, send_timeout: float
) -> None:
    while True:
        message = await service.receive()
        if message.type is aiohttp.WSMsgType.TEXT:
            outgoing = {"type": "websocket.send", "text": message.data}
        elif message.type is aiohttp.WSMsgType.BINARY:
            outgoing = {"type": "websocket.send", "bytes": message.data}
        elif message.type is aiohttp.WSMsgType.CLOSE:
            code = 1000 if message.data in _UNSENDABLE else message.data
            await _close(send, code, message.extra or "")
            return
        else:  # closed or broken without a close frame
            await _close(send, BAD_GATEWAY, "the service behind the gateway went away")
            return
        try:
            async with asyncio.timeout(send_timeout):
                await send(outgoing)
        except TimeoutError:
            took = f"the client took more than {send_timeout:g} s to take events"
            await _close(send, TOO_SLOW, took + "; resume with after")
            return


async def _close(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await send({"type": "websocket.close", "code": code, "reason": reason})
