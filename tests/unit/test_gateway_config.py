"""The gateway config file: good files load, every bad field is one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventgate.errors import ConfigError
from eventgate.gateway.config import load_config

DIGEST = "a" * 64


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eventgate.toml"
    path.write_text(text)
    return path


def test_a_full_config_loads(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            f"""
[gateway]
max_body_bytes = 4096
consistency_wait = 0.5
max_streams_per_consumer = 7
etag_key_hex = "{"0f" * 64}"

[[gateway.consumers]]
name = "reader"
key_sha256 = "{DIGEST}"
scopes = ["read"]
rate_limit = "20/second"
""",
        )
    )
    assert config.auth_enabled and config.max_body_bytes == 4096
    assert config.max_streams_per_consumer == 7
    assert config.consumers[0].rate_limit is not None
    assert config.consumers[0].rate_limit.amount == 20


def test_no_file_means_defaults_with_auth_off() -> None:
    assert not load_config(None).auth_enabled
    assert load_config(None).max_streams_per_consumer == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gateway\n", "not valid TOML"),
        ('[gateway]\nconsistency_wait = "soon"\n', "consistency_wait"),
        ('[gateway]\netag_key_hex = "xyz"\n', "etag_key_hex must be 128 hex digits"),
        ("[gateway]\nmax_body_bytes = 0\n", "max_body_bytes must be a positive integer"),
        ("[gateway]\nmax_streams_per_consumer = -1\n", "max_streams_per_consumer must be a"),
        (f'[[gateway.consumers]]\nname = ""\nkey_sha256 = "{DIGEST}"\nscopes = ["read"]\n', "name"),
        (
            f'[[gateway.consumers]]\nname = "a"\nkey_sha256 = "{DIGEST}"\nscopes = ["root"]\n',
            "scopes",
        ),
        (
            f'[[gateway.consumers]]\nname = "a"\nkey_sha256 = "{DIGEST}"\nscopes = ["read"]\n'
            'rate_limit = "lots"\n',
            "rate_limit",
        ),
        (
            f'[[gateway.consumers]]\nname = "a"\nkey_sha256 = "{DIGEST}"\nscopes = ["read"]\n' * 2,
            "share a name",
        ),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")
