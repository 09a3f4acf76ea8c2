"""A webhook subscription: where to POST which events, and how it fares.

Each subscription runs as the function `webhook.<id>`, so it has that function's
checkpoints, lanes, retries and dead letters (and `eventgate dlq ... --function
webhook.<id>` operates them).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import uuid_utils

from eventgate.errors import ConfigError
from eventgate.hub.hub import TypeFilter

__all__ = ["GRACE", "PREFIX", "Invalid", "Subscription", "new_secret", "parse_new", "parse_update"]

PREFIX = "webhook."
"""Function names of webhooks start with this: `webhook.<subscription id>`."""

_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]+={0,2}$")
_MAX_PATTERNS = 50
GRACE = 86400.0
"""Seconds a replaced secret still signs after a rotation, by default (at most a week)."""
_MAX_GRACE = 7 * 86400.0
_SETTINGS = {  # name: (default, smallest, largest)
    "retries": (5, 0, 20),
    "backoff": (1.0, 0.05, 25.0),
    "disable_after": (5, 1, 1000),
}


class Invalid(ValueError):
    """A request a subscription cannot be made of (rendered 422)."""


@dataclass(frozen=True)
class Subscription:
    """One subscription as stored. `start`: events at or below this position are skipped;
    `failing`: dead letters since its last delivery; `version` grows with every change;
    `previous_secret`: the secret a rotation replaced, which also signs until
    `previous_until`."""

    id: str
    url: str
    types: tuple[str, ...]
    streams: tuple[str, ...]
    secret: str
    start: int
    retries: int
    backoff: float
    disable_after: int
    enabled: bool
    disabled_reason: str | None
    failing: int
    version: int
    created: datetime
    updated: datetime
    previous_secret: str | None = None
    previous_until: datetime | None = None

    @property
    def function(self) -> str:
        return PREFIX + self.id

    def message_id(self, event_id: str) -> str:
        """The `webhook-id` of an event's deliveries to this subscription: unique per
        subscription and event (a receiver of two subscriptions de-duplicates by it and
        keeps both), the same on every retry, replay and redelivery."""
        return f"msg_{self.id}_{event_id}"

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery at `now` is signed with: the current one, and the one a
        rotation replaced while its grace lasts."""
        if self.previous_secret and self.previous_until and now < self.previous_until:
            return [self.secret, self.previous_secret]
        return [self.secret]

    def to_json(self, *, secret: bool = False) -> dict[str, Any]:
        """As the admin API shows it; the secret only in the response that created or
        rotated it."""
        shown: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "types": list(self.types),
            "streams": list(self.streams),
            "start": self.start,
            "retries": self.retries,
            "backoff": self.backoff,
            "disable_after": self.disable_after,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "failing": self.failing,
            "function": self.function,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "previous_secret_until": (
                self.previous_until.isoformat()
                if self.previous_until and self.previous_until > datetime.now(UTC)
                else None
            ),
        }
        if secret:
            shown["secret"] = self.secret
        return shown


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def parse_new(body: Any, head: int) -> Subscription:
    """A new subscription from a create request; `head`: the log's last position, where
    `"start": "end"` (the default) begins."""
    fields = _object(body, {"url", "types", "streams", "secret", "start", *_SETTINGS})
    if "url" not in fields:
        raise Invalid("url is required")
    now = datetime.now(UTC)
    subscription = Subscription(
        id=str(uuid_utils.uuid7()),
        url=_url(fields["url"]),
        types=_patterns(fields.get("types", ["*"]), "types"),
        streams=_patterns(fields.get("streams", []), "streams", empty=True),
        secret=_secret(fields["secret"]) if "secret" in fields else new_secret(),
        start=_start(fields.get("start", "end"), head),
        retries=int(_setting(fields, "retries")),
        backoff=float(_setting(fields, "backoff")),
        disable_after=int(_setting(fields, "disable_after")),
        enabled=True,
        disabled_reason=None,
        failing=0,
        version=1,
        created=now,
        updated=now,
    )
    return subscription


def parse_update(current: Subscription, body: Any) -> Subscription:
    """`current` with an update request's changes; enabling clears the failure count; a new
    secret (`"secret"` given, or `"rotate_secret": true` to have one made) keeps the one it
    replaces signing for `secret_grace` seconds."""
    fields = _object(
        body,
        {"url", "types", "streams", "enabled", "secret", "rotate_secret", "secret_grace",
         *_SETTINGS},
    )  # fmt: skip
    changed = replace(
        current,
        url=_url(fields["url"]) if "url" in fields else current.url,
        types=_patterns(fields["types"], "types") if "types" in fields else current.types,
        streams=(
            _patterns(fields["streams"], "streams", empty=True)
            if "streams" in fields
            else current.streams
        ),
        retries=int(_setting(fields, "retries", current.retries)),
        backoff=float(_setting(fields, "backoff", current.backoff)),
        disable_after=int(_setting(fields, "disable_after", current.disable_after)),
    )
    rotated = _rotated(current, fields)
    if rotated is not None:
        changed = replace(changed, **rotated)
    if "enabled" in fields:
        enabled = fields["enabled"]
        if not isinstance(enabled, bool):
            raise Invalid("enabled must be true or false")
        reason = None if enabled else "disabled over the admin API"
        if enabled != current.enabled:
            changed = replace(changed, enabled=enabled, disabled_reason=reason, failing=0)
    return replace(changed, version=current.version + 1, updated=datetime.now(UTC))


def _rotated(current: Subscription, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The secret fields a rotation sets, or None when the update rotates nothing."""
    rotate = fields.get("rotate_secret", False)
    if not isinstance(rotate, bool):
        raise Invalid("rotate_secret must be true or false")
    if rotate and "secret" in fields:
        raise Invalid("give a secret or ask for one to be made (rotate_secret), not both")
    if not rotate and "secret" not in fields:
        if "secret_grace" in fields:
            raise Invalid("secret_grace goes with a new secret (secret or rotate_secret)")
        return None
    grace = fields.get("secret_grace", GRACE)
    if isinstance(grace, bool) or not isinstance(grace, int | float):
        raise Invalid("secret_grace must be a number of seconds")
    if not 0 <= grace <= _MAX_GRACE:
        raise Invalid(f"secret_grace must be from 0 to {_MAX_GRACE:g} seconds")
    secret = _secret(fields["secret"]) if "secret" in fields else new_secret()
    if secret == current.secret:
        raise Invalid("the new secret must differ from the current one")
    until = datetime.now(UTC) + timedelta(seconds=grace)
    return {"secret": secret, "previous_secret": current.secret, "previous_until": until}


def _object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return body


def _url(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 2000:
        raise Invalid("url must be a string of at most 2000 characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise Invalid(f"url is not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise Invalid("url must be http:// or https://")
    if not parts.hostname:
        raise Invalid("url needs a host")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url must not carry credentials (sign with the secret instead)")
    if parts.fragment:
        raise Invalid("url must not have a #fragment")
    return value


def _patterns(value: Any, name: str, *, empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise Invalid(f"{name} must be a list of strings (names or globs like Item*)")
    if len(value) > _MAX_PATTERNS or any(len(p) > 200 or not p.strip() for p in value):
        raise Invalid(f"{name}: at most {_MAX_PATTERNS} non-empty patterns of 200 characters")
    if not value and not empty:
        raise Invalid(f"{name} needs at least one pattern ('*' for every event)")
    try:
        TypeFilter(value or ["*"])
    except (ConfigError, re.error) as e:
        raise Invalid(f"{name}: {e}") from e
    return tuple(value)


def _secret(value: Any) -> str:
    if not isinstance(value, str) or not _SECRET.match(value):
        raise Invalid("secret must be whsec_ followed by base64 (omit it to get one made)")
    try:
        key = base64.b64decode(value[len("whsec_") :], validate=True)
    except binascii.Error as e:
        raise Invalid("secret must be whsec_ followed by valid base64") from e
    if not 24 <= len(key) <= 64:
        raise Invalid("secret must hold 24 to 64 bytes (base64 after whsec_)")
    return value


def _start(value: Any, head: int) -> int:
    """Skip the events at or below the returned position: "end" (from now), "beginning"
    or a position (the events after it)."""
    if value == "end":
        return head
    if value == "beginning":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise Invalid('start must be "end", "beginning" or a position (a number >= 0)')


def _setting(fields: dict[str, Any], name: str, current: float | None = None) -> float:
    default, low, high = _SETTINGS[name]
    value = fields.get(name, default if current is None else current)
    integral = isinstance(default, int)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integral and not isinstance(value, int))
    ):
        raise Invalid(f"{name} must be a number")
    if not low <= value <= high:
        raise Invalid(f"{name} must be from {low} to {high}")
    return value
