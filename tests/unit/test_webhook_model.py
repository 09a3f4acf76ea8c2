"""Subscriptions as the admin API reads them: defaults, start positions, secrets, updates."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from eventgate.webhooks.model import Invalid, new_secret, parse_new, parse_update


def test_defaults_start_at_the_end_of_the_log_with_a_fresh_secret() -> None:
    made = parse_new({"url": "https://example.com/hook"}, head=41)
    assert (made.start, made.types, made.streams, made.enabled) == (41, ("*",), (), True)
    assert (made.retries, made.backoff, made.disable_after) == (5, 1.0, 5)
    assert made.function == f"webhook.{made.id}"
    assert len(base64.b64decode(made.secret.removeprefix("whsec_"))) == 32
    assert made.secret != new_secret()
    assert "secret" not in made.to_json() and made.to_json(secret=True)["secret"] == made.secret


@pytest.mark.parametrize(("start", "expected"), [("end", 41), ("beginning", 0), (7, 7), (0, 0)])
def test_a_start_position(start: object, expected: int) -> None:
    assert parse_new({"url": "http://h/", "start": start}, head=41).start == expected


@pytest.mark.parametrize("start", [-1, True, 1.5, "now", None])
def test_a_bad_start_position_is_refused(start: object) -> None:
    with pytest.raises(Invalid, match="start must be"):
        parse_new({"url": "http://h/", "start": start}, head=41)


@pytest.mark.parametrize(
    "secret",
    ["whsec_" + base64.b64encode(b"k" * 16).decode(), "whsec_not base64", "abc", 12],
)
def test_a_bad_secret_is_refused(secret: object) -> None:
    with pytest.raises(Invalid, match="secret must"):
        parse_new({"url": "http://h/", "secret": secret}, head=0)


def test_a_given_secret_signs_what_standardwebhooks_verifies() -> None:
    secret = "whsec_" + base64.b64encode(b"s" * 24).decode()
    made = parse_new({"url": "http://h/", "secret": secret}, head=0)
    now = datetime.now(UTC)
    signature = Webhook(made.secret).sign("id-1", now, '{"a":1}')
    headers = {"webhook-id": "id-1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature}  # fmt: skip
    assert Webhook(secret).verify('{"a":1}', headers) == {"a": 1}


@pytest.mark.parametrize(
    ("field", "value"),
    [("retries", 21), ("retries", 1.5), ("backoff", 0), ("backoff", "1"), ("disable_after", 0),
     ("types", ["ok", ""]), ("streams", "one"), ("types", ["x"] * 51)],
)  # fmt: skip
def test_settings_out_of_range_are_refused(field: str, value: object) -> None:
    with pytest.raises(Invalid, match=field):
        parse_new({"url": "http://h/", field: value}, head=0)


def test_enabling_clears_the_failures_and_the_reason_and_every_update_is_a_version() -> None:
    made = parse_new({"url": "http://h/"}, head=3)
    broken = replace(made, enabled=False, disabled_reason="5 events in a row", failing=5)
    enabled = parse_update(broken, {"enabled": True})
    assert (enabled.enabled, enabled.disabled_reason, enabled.failing) == (True, None, 0)
    assert enabled.version == made.version + 1 and enabled.start == made.start
    moved = parse_update(enabled, {"url": "https://elsewhere/", "types": ["Item*"]})
    assert (moved.url, moved.types, moved.version) == ("https://elsewhere/", ("Item*",), 3)
    assert moved.secret == made.secret
    off = parse_update(moved, {"enabled": False})
    assert off.disabled_reason == "disabled over the admin API"
    with pytest.raises(Invalid, match="unknown field"):
        parse_update(moved, {"secret": new_secret()})  # a secret is set once, at creation
