"""Subscriptions as the admin API reads them: defaults, start positions, secrets, updates."""

from __future__ import annotations

import base64
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from eventgate.webhooks.delivery import PublicResolver, checked_target
from eventgate.webhooks.model import GRACE, Invalid, new_secret, parse_new, parse_update

INSIDE = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:5",  # NAT64 of 10.0.0.5
    "64:ff9b:1::a00:5",  # local-use NAT64
    "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
    "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1
    "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:5::1",  # 6to4 of 10.0.0.5
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::808:808",  # IPv4-compatible (deprecated) even of a public address
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::1",
    "fe80::1",
    "fc00::1",
    "ff02::1",
    "127.0.0.1",
    "10.0.0.5",
    "100.64.0.1",
    "169.254.169.254",
    "224.0.0.1",
]
OUTSIDE = ["93.184.215.14", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]


class _Answers(AbstractResolver):
    """What a name server would answer for every name: `address`."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        return [{"hostname": host, "host": self.address, "port": port, "family": family,
                 "proto": 0, "flags": 0}]  # fmt: skip

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("address", INSIDE)
def test_a_url_at_a_non_public_address_is_refused_even_inside_ipv6(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(Invalid, match="non-public"):
        checked_target(f"https://{host}/hook", private=False)
    checked_target(f"https://{host}/hook", private=True)


@pytest.mark.parametrize("address", OUTSIDE)
def test_a_url_at_a_public_address_is_allowed(address: str) -> None:
    checked_target(f"https://[{address}]/" if ":" in address else f"https://{address}/", False)


@pytest.mark.parametrize("address", INSIDE)
async def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(OSError, match="no public address"):
        await PublicResolver(_Answers(address)).resolve("hooks.example.com", 443)


@pytest.mark.parametrize("address", OUTSIDE)
async def test_a_name_resolving_to_a_public_address_is_kept(address: str) -> None:
    found = await PublicResolver(_Answers(address)).resolve("hooks.example.com", 443)
    assert [r["host"] for r in found] == [address]


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
    assert off.secret == made.secret and off.previous_secret is None


def test_a_rotation_keeps_the_replaced_secret_signing_until_its_grace_ends() -> None:
    made = parse_new({"url": "http://h/"}, head=0)
    rotated = parse_update(made, {"rotate_secret": True, "secret_grace": 60})
    assert rotated.secret != made.secret and rotated.previous_secret == made.secret
    assert rotated.previous_until is not None and rotated.version == made.version + 1
    now = datetime.now(UTC)
    assert rotated.signing_secrets(now) == [rotated.secret, made.secret]
    assert rotated.signing_secrets(rotated.previous_until) == [rotated.secret]
    assert rotated.to_json()["previous_secret_until"] == rotated.previous_until.isoformat()
    given = "whsec_" + base64.b64encode(b"g" * 32).decode()
    again = parse_update(rotated, {"secret": given})  # the oldest is dropped
    assert (again.secret, again.previous_secret) == (given, rotated.secret)
    assert again.previous_until is not None
    assert again.previous_until - now >= timedelta(seconds=GRACE - 5)
    assert parse_update(again, {"url": "http://i/"}).signing_secrets(now) == [given, rotated.secret]


@pytest.mark.parametrize(
    ("update", "reason"),
    [({"rotate_secret": True, "secret": new_secret()}, "not both"),
     ({"rotate_secret": "yes"}, "rotate_secret must"),
     ({"secret": "whsec_short"}, "secret must"),
     ({"secret_grace": 10}, "goes with a new secret"),
     ({"rotate_secret": True, "secret_grace": -1}, "secret_grace must"),
     ({"rotate_secret": True, "secret_grace": 8 * 86400}, "secret_grace must"),
     ({"rotate_secret": True, "secret_grace": "1"}, "secret_grace must")],
)  # fmt: skip
def test_a_bad_rotation_is_refused(update: dict[str, object], reason: str) -> None:
    made = parse_new({"url": "http://h/"}, head=0)
    with pytest.raises(Invalid, match=reason):
        parse_update(made, update)
    with pytest.raises(Invalid, match="differ"):
        parse_update(made, {"secret": made.secret})
