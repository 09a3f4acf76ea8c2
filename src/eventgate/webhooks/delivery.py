"""One delivery: the event as a structured CloudEvent, POSTed and signed per Standard Webhooks.

`webhook-id` is `msg_<subscription id>_<event id>`: unique per subscription and event, the
same on every retry and replay, so a receiver that remembers the ids it handled handles each
event once per subscription (the event's own id is the CloudEvent's `id`).
`webhook-timestamp` is the time of the attempt (receivers refuse old ones). A 2xx is
success; any other status, a redirect, a timeout or a connection error fails the attempt,
and the function runtime retries it.

Targets on private, loopback or link-local addresses are refused unless
EVENTGATE_WEBHOOKS_ALLOW_PRIVATE=true: the addresses a host name resolves to are checked
where the connection is made, so a name cannot be pointed inside after it was accepted.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks import Webhook

from eventgate.functions.api import FunctionEvent, Retry
from eventgate.functions.context import Context
from eventgate.functions.model import Hold
from eventgate.hub.hub import TypeFilter
from eventgate.streaming.cloudevents import structured
from eventgate.webhooks.model import Invalid, Subscription

__all__ = [
    "CONTENT_TYPE",
    "Delivery",
    "DeliveryFailed",
    "PublicResolver",
    "Sender",
    "checked_target",
    "private_targets_allowed",
]

log = logging.getLogger("eventgate.webhooks")
CONTENT_TYPE = "application/cloudevents+json"
RESPONSE_READ = 4096
"""Bytes of a receiver's answer read at most (the start of an error, for the dead letter)."""


def private_targets_allowed(environ: Mapping[str, str]) -> bool:
    """Whether EVENTGATE_WEBHOOKS_ALLOW_PRIVATE lets webhooks target private and loopback
    addresses (tests, local setups); read once, where the system is wired."""
    return environ.get("EVENTGATE_WEBHOOKS_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes")


_REFUSED_V6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/96",  # IPv4-compatible (deprecated): ::7f00:1 is 127.0.0.1
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "2001::/32",  # Teredo
    )
)
_V4_IN_LAST_32_BITS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b::/96",  # NAT64: 64:ff9b::a00:5 reaches 10.0.0.5 on a NAT64 network
    )
)


def _public(address: str) -> bool:
    """Whether a target address is global unicast, judging an IPv6 address that carries an
    IPv4 one (NAT64, mapped, translated, 6to4) by that IPv4 address: Python 3.11.7's
    `is_global` takes them for global (fixed with CVE-2024-4032 in later releases)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _REFUSED_V6):
            return False
        if any(ip in net for net in _V4_IN_LAST_32_BITS):
            return _public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.sixtofour is not None:  # 2002::/16
            return _public(str(ip.sixtofour))
    return ip.is_global and not ip.is_multicast


def checked_target(url: str, private: bool) -> None:
    """Refuse a URL whose host is a literal non-public address (names are checked later)."""
    host = urlsplit(url).hostname or ""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    if not private and not _public(str(literal)):
        raise Invalid(
            f"url targets the non-public address {host}; see EVENTGATE_WEBHOOKS_ALLOW_PRIVATE"
        )


class PublicResolver(AbstractResolver):
    """The default resolver, keeping only public addresses."""

    def __init__(self, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [r for r in found if _public(r["host"])]
        if not public:
            message = f"{host} resolves to no public address (webhooks refuse private ones)"
            raise OSError(errno.EHOSTUNREACH, message)
        return public

    async def close(self) -> None:
        await self._resolver.close()


class DeliveryFailed(Exception):
    """An attempt the receiver did not accept."""


class Sender:
    """The HTTP client every delivery of one process shares (a pool of connections)."""

    def __init__(self, *, private: bool, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.private = private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the running loop
            connector = aiohttp.TCPConnector(
                limit=256, resolver=None if self.private else PublicResolver()
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=min(5.0, self.timeout)),
                headers={"User-Agent": "eventgate-webhooks"},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        """POST once; DeliveryFailed (or Retry when the receiver asks for a wait) unless 2xx."""
        try:
            checked_target(url, self.private)  # a literal address; names: in the resolver
        except Invalid as e:
            raise DeliveryFailed(str(e)) from None
        try:
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return
                answer = (await response.content.read(RESPONSE_READ)).decode("utf-8", "replace")
                wait = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, OSError) as e:
            raise DeliveryFailed(f"{type(e).__name__}: {e}"[:500]) from None
        message = f"HTTP {response.status}: {answer[:300]}".strip()
        if response.status in (429, 503) and wait.isdigit():
            raise Retry(min(float(wait), 300.0), message)
        raise DeliveryFailed(message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Delivery:
    """The function handler of one subscription (one version of it)."""

    def __init__(self, subscription: Subscription, sender: Sender, source: str, store: Any) -> None:
        self.subscription = subscription
        self.failing = subscription.failing
        self.disabled = False
        self._sender = sender
        self._source = source
        self._store = store
        self._signers = [
            (Webhook(secret), secret)
            for secret in filter(None, (subscription.secret, subscription.previous_secret))
        ]
        self._streams = TypeFilter(subscription.streams) if subscription.streams else None

    async def __call__(self, event: FunctionEvent, ctx: Context) -> None:
        s = self.subscription
        if event.position <= s.start or (self._streams and not self._streams(event.stream_id)):
            return
        if self.disabled:
            raise Hold("subscription disabled")
        body = orjson.dumps(structured(self._source, event))
        now = datetime.now(UTC)
        message_id = s.message_id(event.id)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signature(message_id, now, body.decode()),
        }
        try:
            await self._sender.post(s.url, body, headers)
        except (DeliveryFailed, Retry) as e:
            if ctx.attempt > s.retries and await self._dead_lettered(str(e)):
                raise Hold("subscription disabled") from None
            raise
        if self.failing:
            self.failing = 0
            await self._store.delivered(s.id)

    def _signature(self, message_id: str, now: datetime, body: str) -> str:
        """`v1,<signature>` with the current secret, and after a rotation, while the grace
        lasts, a second one with the secret it replaced (space-separated, as Standard
        Webhooks allows), so a receiver holding either verifies."""
        valid = self.subscription.signing_secrets(now)
        return " ".join(
            signer.sign(message_id, now, body)
            for signer, secret in self._signers
            if secret in valid
        )

    async def _dead_lettered(self, error: str) -> bool:
        """Count a last failed attempt; True when the subscription was disabled before it
        (by another worker, say): then the event is held (Hold: the runner keeps it
        unfinished until the worker stops this disabled subscription), not dead-lettered."""
        try:
            now = await self._store.failed(self.subscription.id, error[:300])
        except Exception:
            log.exception("webhook %s: counting a failure failed", self.subscription.id)
            return False
        if now is None or now.enabled:
            return False
        self.failing, self.disabled = now.failing, True
        if now.failing == now.disable_after:
            log.error("webhook %s disabled: %s", now.id, now.disabled_reason)
            return False  # this failure disabled it: a dead letter, as counted
        return True
