"""The AsyncAPI documents validated by the AsyncAPI project's own parser (@asyncapi/parser,
from npm, run by node): the inventory's, the orders app's with a broker and API keys, and a
broken one the parser must refuse (so a document it accepts is known to be checked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventgate.examples.inventory import inventory_app
from eventgate.examples.orders import orders_app
from eventgate.schemas.asyncapi import asyncapi_document
from tests.conftest import installed

PARSER = "@asyncapi/parser@3.6.6"
SCRIPT = Path(__file__).with_name("asyncapi_parse.cjs")


@pytest.fixture(scope="session")
def parser_modules() -> Iterator[Path]:
    """node_modules holding PARSER, installed once into a cache directory (npm install into
    a fresh directory, then renamed into place, so concurrent runs do not mix)."""
    installed(shutil.which("node"), "nodejs")
    npm = installed(shutil.which("npm"), "npm")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eventgate-tests"
    target = cache / PARSER.replace("/", "+")
    if not (target / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(dir=cache))
        command = [npm, "install", "--prefix", str(fresh), "--no-audit", "--no-fund", PARSER]
        subprocess.run(command, check=True, capture_output=True, timeout=600)
        try:
            fresh.rename(target)
        except OSError:  # another run got there first
            shutil.rmtree(fresh)
    yield target / "node_modules"


def parse(modules: Path, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(SCRIPT)],
        input=orjson.dumps(document).decode(),
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("inventory", lambda: asyncapi_document(inventory_app())),
        ("orders, broker, keys", lambda: asyncapi_document(
            orders_app(), broker_url="nats://user:pa55word@nats.example:4222", secured=True)),
    ],
)  # fmt: skip
def test_the_parser_finds_no_error_in_the_document(
    parser_modules: Path, name: str, document: Any
) -> None:
    parsed = parse(parser_modules, document())
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    assert parsed.stdout.splitlines()[-1].startswith("valid AsyncAPI 3.0.0")


def test_the_broker_channels_are_there_only_with_a_broker_and_without_its_credentials() -> None:
    plain = asyncapi_document(orders_app())
    brokered = asyncapi_document(orders_app(), broker_url="nats://user:pa55word@nats.example:4222")
    assert "nats" not in plain["servers"]
    assert brokered["servers"]["nats"] == {
        "host": "nats.example:4222",
        "protocol": "nats",
        "description": "NATS JetStream (CloudEvents binary mode)",
    }
    assert "pa55word" not in orjson.dumps(brokered).decode()
    subjects = {c["address"] for n, c in brokered["channels"].items() if n.startswith("nats.")}
    assert "eventgate.orders.{partition}.OrderPlaced" in subjects and len(subjects) == 12


def test_a_broken_document_is_refused(parser_modules: Path) -> None:
    document = asyncapi_document(inventory_app())
    document["operations"]["send.events"]["channel"] = {"$ref": "#/channels/nowhere"}
    parsed = parse(parser_modules, document)
    assert parsed.returncode == 1 and "invalid:" in parsed.stdout
