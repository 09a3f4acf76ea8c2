"""Settings: URLs shown to people never carry their secrets."""

from __future__ import annotations

import pytest

from eventgate.config import Settings, redact
from eventgate.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr3t@db/eventgate", "postgresql://app:***@db/eventgate"),
        ("postgresql://app@db/eventgate", "postgresql://app@db/eventgate"),
        ("nats://user:s3cr3t@broker:4222", "nats://user:***@broker:4222"),
        ("nats://s3cr3t-token@broker:4222", "nats://***@broker:4222"),
        ("tls://s3cr3t-token@broker:4222", "tls://***@broker:4222"),
        ("nats://broker:4222", "nats://broker:4222"),
    ],
)
def test_passwords_and_nats_tokens_are_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_broker_url_must_be_nats_or_tls() -> None:
    with pytest.raises(ConfigError, match="nats:// or tls://"):
        Settings(broker_url="http://broker:4222")
    assert Settings(broker_url="tls://broker:4222").broker_url == "tls://broker:4222"
