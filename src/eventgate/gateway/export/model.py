"""What a gateway export holds, read once from the embedded gateway's own declarations.

Every route is one of the RouteTable's GatewayRoutes (the table `up` and `serve gateway`
match requests with), split by the scope its methods need; each path's allowed methods
(405's Allow) are the table's too. Consumers, scopes, rate limits and the body limit are the
config file's. The one thing the file does not hold is the keys themselves (only their
SHA-256): Envoy's api_key_auth and APISIX's key-auth compare plaintext keys, so they are
read at export time from a keys file or the environment, and each is checked against its
hash before it is written (docs/decisions/0007-gateway-exports.md).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from eventgate.config import read_toml
from eventgate.errors import ConfigError
from eventgate.gateway.config import GatewayConfig
from eventgate.gateway.routes import RouteTable, pattern_regex
from eventgate.gateway.upstream import IDEMPOTENT_METHODS

__all__ = [
    "KEY_ENV_PREFIX",
    "SERVICES",
    "Export",
    "Instance",
    "KeyedConsumer",
    "PathMethods",
    "RateLimit",
    "Route",
    "Service",
    "build_export",
    "key_variable",
    "read_keys",
]

SERVICES = {"commands": "commands", "queries": "queries", "admin": "commands"}
"""A route's upstream -> the service that answers it: the command service serves the admin
API under /admin/, as `up` and `serve gateway` wire it (bootstrap.command_service)."""
KEY_ENV_PREFIX = "EVENTGATE_KEY_"


@dataclass(frozen=True)
class Instance:
    """One address of a service (`--commands URL`, `--queries URL`)."""

    scheme: str
    host: str
    port: int

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Service:
    """A command or query service: every instance of it, all reached the same way."""

    name: str
    instances: tuple[Instance, ...]

    @property
    def tls(self) -> bool:
        return self.instances[0].scheme == "https"


@dataclass(frozen=True)
class Route:
    """The methods of one GatewayRoute that need one scope, and who holds that scope."""

    pattern: str
    regex: str
    """Matches whole paths as RouteTable does (RE2 and PCRE read it alike)."""
    methods: tuple[str, ...]
    service: str
    scope: str
    consumers: tuple[str, ...]
    """The consumers that hold the scope (admin holds read and write too)."""
    stream: bool = False
    """An event stream: no total time limit."""
    websocket: bool = False
    """Takes WebSocket upgrades."""

    @property
    def takes_query_key(self) -> bool:
        """The key may come in `?api_key=` too (gateway/app.py): an event stream's routes,
        which browsers cannot set headers on (WebSocket, EventSource)."""
        return (self.stream or self.websocket) and set(self.methods) <= {"GET", "HEAD"}

    @property
    def reads(self) -> bool:
        """Every method only reads: the request may be sent to a second instance after a
        first one failed mid-request (as gateway/upstream.py retries)."""
        return set(self.methods) <= IDEMPOTENT_METHODS


@dataclass(frozen=True)
class PathMethods:
    """A route pattern and every method some route takes on it (405's Allow)."""

    pattern: str
    regex: str
    allowed: tuple[str, ...]


@dataclass(frozen=True)
class RateLimit:
    amount: int
    seconds: int
    text: str
    """As the embedded gateway says it: '5 per 1 minute'."""


@dataclass(frozen=True)
class KeyedConsumer:
    name: str
    key: str = field(repr=False)
    scopes: frozenset[str]
    rate_limit: RateLimit | None


@dataclass(frozen=True)
class Export:
    """Everything a gateway in front of the services needs to behave as `serve gateway`."""

    app: str
    routes: tuple[Route, ...]
    paths: tuple[PathMethods, ...]
    consumers: tuple[KeyedConsumer, ...]
    services: tuple[Service, ...]
    max_body_bytes: int
    timeout: float
    host: str
    port: int
    openapi: bytes = field(repr=False)
    internal_token: str | None = field(repr=False, default=None)
    asyncapi: bytes = field(repr=False, default=b"")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.consumers)

    @property
    def rate_limited(self) -> tuple[KeyedConsumer, ...]:
        return tuple(c for c in self.consumers if c.rate_limit is not None)


def build_export(
    app: str,
    table: RouteTable,
    openapi: Mapping[str, Any],
    config: GatewayConfig,
    services: Mapping[str, Sequence[str]],
    keys: Mapping[str, str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    timeout: float = 10.0,
    internal_token: str | None = None,
    asyncapi: Mapping[str, Any] | None = None,
) -> Export:
    """The export of `table` (bootstrap.route_table) and `config` in front of `services`
    (name -> base URLs); `keys`: each consumer's key (read_keys)."""
    routes: list[Route] = []
    for route in table.routes:
        service = SERVICES.get(route.upstream)
        if service is None:
            raise ConfigError(f"route {route.pattern} names an unknown upstream {route.upstream!r}")
        by_scope: dict[str, list[str]] = {}
        for method in sorted(route.methods):
            by_scope.setdefault(route.needs(method), []).append(method)
        for scope, methods in by_scope.items():
            holders = tuple(c.name for c in config.consumers if c.holds(scope))
            regex = pattern_regex(route.pattern)
            routes.append(Route(route.pattern, regex, tuple(methods), service, scope, holders,
                                route.stream, route.websocket))  # fmt: skip
    patterns = dict.fromkeys(route.pattern for route in table.routes)
    paths = tuple(PathMethods(p, pattern_regex(p), tuple(table.allowed(p))) for p in patterns)
    consumers = []
    for consumer in config.consumers:
        if consumer.name not in keys:
            raise ConfigError(f"no API key for consumer {consumer.name!r}")
        limit = consumer.rate_limit
        rate = None if limit is None else RateLimit(limit.amount, limit.get_expiry(), str(limit))
        consumers.append(KeyedConsumer(consumer.name, keys[consumer.name], consumer.scopes, rate))
    used = sorted({SERVICES[r.upstream] for r in table.routes})
    return Export(
        app=app,
        routes=tuple(routes),
        paths=paths,
        consumers=tuple(consumers),
        services=tuple(_service(name, services.get(name, ())) for name in used),
        max_body_bytes=config.max_body_bytes,
        timeout=timeout,
        host=host,
        port=port,
        openapi=orjson.dumps(openapi),
        internal_token=internal_token,
        asyncapi=b"" if asyncapi is None else orjson.dumps(asyncapi),
    )


def _service(name: str, urls: Sequence[str]) -> Service:
    if not urls:
        raise ConfigError(f"no address for the {name} service (--{name} URL)")
    instances = []
    for url in urls:
        parts = urlsplit(url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            raise ConfigError(f"{url!r} is not a service URL like http://10.0.0.5:8001")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as e:
            raise ConfigError(f"{url!r}: {e}") from None
        instances.append(Instance(parts.scheme, parts.hostname, port))
    if len({i.scheme for i in instances}) > 1:
        raise ConfigError(f"the {name} service's URLs mix http and https")
    if len(set(instances)) != len(instances):
        raise ConfigError(f"the {name} service lists one address twice")
    return Service(name, tuple(instances))


def key_variable(consumer: str) -> str:
    """The environment variable that may hold `consumer`'s key: EVENTGATE_KEY_<NAME>, the
    name upper-cased with every other character than A-Z and 0-9 made `_`."""
    return KEY_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", consumer.upper())


def read_keys(
    config: GatewayConfig, keys_file: Path | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Each consumer's API key, from `keys_file` (TOML: `name = "key"`), else the
    environment (key_variable); each must hash to the consumer's key_sha256. Errors name
    the consumer, never a key."""
    given: dict[str, str] = {}
    names = {c.name for c in config.consumers}
    if keys_file is not None:
        for name, value in read_toml(keys_file).items():
            if name not in names:
                raise ConfigError(f"{keys_file}: no consumer in the config is named {name!r}")
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{keys_file}: the key of {name!r} must be a non-empty string")
            given[name] = value
    keys = {}
    for consumer in config.consumers:
        key = given.get(consumer.name) or environ.get(key_variable(consumer.name))
        if not key:
            raise ConfigError(f"no API key for consumer {consumer.name!r}: give it in"
                              f" --keys-file or {key_variable(consumer.name)}")  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not hmac.compare_digest(digest, consumer.key_sha256):
            raise ConfigError(f"the key given for consumer {consumer.name!r} does not match"
                              " its key_sha256 in the config")  # fmt: skip
        keys[consumer.name] = key
    return keys
