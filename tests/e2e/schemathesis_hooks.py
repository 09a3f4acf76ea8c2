"""Schemathesis as a client that follows eventgate's documented protocol for reading its own
writes (docs/http.md): each read carries the newest `Consistency-Token` a write answered
with, unless the generated request already has one. Without it a stateful sequence such as
DELETE then GET races the projection (read models are eventually consistent by design) and
fails on timing, not on a fault. Loaded by tests/e2e/test_fuzz_openapi.py via
SCHEMATHESIS_HOOKS; every check stays on."""

from __future__ import annotations

from typing import Any

import schemathesis

_newest: dict[str, str] = {}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    tokens = response.headers.get("consistency-token")
    if tokens:
        _newest["token"] = tokens[0]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() not in ("GET", "HEAD") or "token" not in _newest:
        return
    headers = dict(case.headers or {})
    if not any(name.lower() == "consistency-token" for name in headers):
        headers["Consistency-Token"] = _newest["token"]
        case.headers = headers
