"""The declarative route table: (methods, path pattern) -> upstream name."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SAFE_METHODS", "GatewayRoute", "RouteTable", "pattern_regex"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that read; they need the `read` scope, every other method `write`."""


@dataclass(frozen=True)
class GatewayRoute:
    """Requests with one of `methods` on a path matching `pattern` go to `upstream`.
    `scope` is what the consumer needs; by default read for safe methods, else write."""

    methods: frozenset[str]
    pattern: str
    upstream: str
    scope: str | None = None
    stream: bool = False
    """The answer is an open-ended stream (Server-Sent Events): no total time limit."""
    websocket: bool = False
    """The route takes WebSocket upgrades (and the key in `?api_key=`: gateway/app.py)."""

    def needs(self, method: str) -> str:
        if self.scope is not None:
            return self.scope
        return "read" if method in SAFE_METHODS else "write"


class RouteTable:
    """Matches a request to a route, or says which methods its path would allow."""

    def __init__(self, routes: Iterable[GatewayRoute]) -> None:
        self.routes = list(routes)
        # A parameter never spans a "/", so only patterns with as many as the path can match.
        self._by_depth: dict[int, list[tuple[re.Pattern[str], GatewayRoute]]] = {}
        for route in self.routes:
            compiled = (_compile(route.pattern), route)
            self._by_depth.setdefault(route.pattern.count("/"), []).append(compiled)

    def match(self, method: str, path: str) -> GatewayRoute | None:
        """The route for (method, path), or None."""
        for regex, route in self._by_depth.get(path.count("/"), ()):
            if method in route.methods and regex.fullmatch(path):
                return route
        return None

    def allowed(self, path: str) -> list[str]:
        """Every method some route takes on `path` (for 405's Allow and OPTIONS)."""
        allowed: list[str] = []
        for regex, route in self._by_depth.get(path.count("/"), ()):
            if regex.fullmatch(path):
                allowed += [m for m in sorted(route.methods) if m not in allowed]
        return allowed


def pattern_regex(pattern: str) -> str:
    """The regular expression (to match whole paths) of a route pattern: each `{parameter}`
    is one or more characters other than "/". RE2 reads it the same (the gateway exports)."""
    parts = re.split(r"(\{[a-z_]+\})", pattern)
    return "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern_regex(pattern))
