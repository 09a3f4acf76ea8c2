"""The gateway's settings from the TOML config file: consumers, scopes, limits."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import RateLimitItem, parse

from eventgate.config import read_toml
from eventgate.errors import ConfigError
from eventgate.streaming.quota import MAX_STREAMS_PER_CONSUMER

__all__ = ["SCOPES", "Consumer", "GatewayConfig", "load_config"]

SCOPES = frozenset({"read", "write", "admin"})
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{128}$")


@dataclass(frozen=True)
class Consumer:
    """One API client: its name, the SHA-256 of its key, its scopes and rate limit."""

    name: str
    key_sha256: str
    scopes: frozenset[str]
    rate_limit: RateLimitItem | None = None

    def holds(self, scope: str) -> bool:
        """Whether this consumer may use what needs `scope` (admin implies read and write)."""
        return scope in self.scopes or ("admin" in self.scopes and scope in ("read", "write"))


@dataclass(frozen=True)
class GatewayConfig:
    consumers: Sequence[Consumer] = ()
    max_body_bytes: int = 1024 * 1024
    consistency_wait: float = 2.0
    etag_key_hex: str | None = None
    max_streams_per_consumer: int = MAX_STREAMS_PER_CONSUMER
    """Event streams (SSE connections, WebSocket subscriptions) one consumer may hold in a
    query-service process (streaming/quota.py); without auth, clients are held only to the
    process's limit."""

    @property
    def auth_enabled(self) -> bool:
        return bool(self.consumers)


def load_config(path: Path | None) -> GatewayConfig:
    """Read and check the config file; every problem is a ConfigError naming the field."""
    if path is None:
        return GatewayConfig()
    document = read_toml(path)
    gateway = _table(document.get("gateway", {}), "gateway")
    consumers = [_consumer(c, n) for n, c in enumerate(gateway.get("consumers", []))]
    names = [c.name for c in consumers]
    if len(set(names)) != len(names):
        raise ConfigError("gateway.consumers: two consumers share a name")
    wait = gateway.get("consistency_wait", 2.0)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 60:
        raise ConfigError("gateway.consistency_wait must be a number of seconds from 0 to 60")
    key = gateway.get("etag_key_hex")
    if key is not None and not (isinstance(key, str) and _HEX_KEY.match(key)):
        raise ConfigError("gateway.etag_key_hex must be 128 hex digits (a 64-byte key)")
    return GatewayConfig(
        consumers=consumers,
        max_body_bytes=_positive_int(gateway.get("max_body_bytes", 1024 * 1024), "max_body_bytes"),
        consistency_wait=float(wait),
        etag_key_hex=key,
        max_streams_per_consumer=_positive_int(
            gateway.get("max_streams_per_consumer", MAX_STREAMS_PER_CONSUMER),
            "max_streams_per_consumer",
        ),
    )


def _consumer(raw: object, index: int) -> Consumer:
    where = f"gateway.consumers[{index}]"
    table = _table(raw, where)
    name, digest = table.get("name"), str(table.get("key_sha256", "")).lower()
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a non-empty string")
    if not _HEX_SHA256.match(digest):
        raise ConfigError(f"{where}.key_sha256 must be 64 hex digits (sha256 of the key)")
    scopes = frozenset(table.get("scopes", ()))
    if not scopes or not scopes <= SCOPES:
        raise ConfigError(f"{where}.scopes must be a non-empty subset of {sorted(SCOPES)}")
    rate = table.get("rate_limit")
    try:
        limit = parse(rate) if rate is not None else None
    except ValueError as e:
        raise ConfigError(f"{where}.rate_limit {rate!r} is not like '20/second'") from e
    return Consumer(name, digest, scopes, limit)


def _table(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    return raw


def _positive_int(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
        raise ConfigError(f"gateway.{where} must be a positive integer")
    return raw
