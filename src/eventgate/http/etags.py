"""Entity tags: opaque item ETags (AES-SIV of id, version and format) and content hashes.

An item's ETag must reveal nothing (a client must not guess the next version), be the
same for the same version and representation (so caches and If-None-Match work), and be
readable by the server alone (If-Match turns it back into an expected version). AES-SIV
is deterministic authenticated encryption: exactly those three properties.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from eventgate.errors import ConfigError

__all__ = ["KEY_BYTES", "ETagCipher", "content_etag", "load_or_create_key", "parse_etags"]

KEY_BYTES = 64  # AES-256-SIV


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class ETagCipher:
    """Seals (id, version, format) into an opaque strong ETag and opens it again."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"the ETag key must be {KEY_BYTES} bytes, not {len(key)}")
        self._siv = AESSIV(key)

    def seal(self, item_id: str, version: int, fmt: str) -> str:
        sealed = self._siv.encrypt(f"{version}|{fmt}".encode(), [item_id.encode()])
        return f'"{_b64(sealed)}"'

    def open(self, etag: str, item_id: str) -> int | None:
        """The version inside `etag` if it was sealed by us for `item_id`, else None."""
        opaque = etag.removeprefix("W/").strip('"')
        try:
            raw = base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4))
            plain = self._siv.decrypt(raw, [item_id.encode()]).decode()
            return int(plain.split("|", 1)[0])
        except (binascii.Error, InvalidTag, ValueError):
            return None


def content_etag(body: bytes) -> str:
    """A strong ETag derived from the representation's bytes."""
    return f'"{_b64(hashlib.sha256(body).digest()[:18])}"'


def parse_etags(header: str) -> list[str] | None:
    """The entity tags of an If-Match / If-None-Match header; None for `*`."""
    if header.strip() == "*":
        return None
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def load_or_create_key(path: Path) -> bytes:
    """The data directory's ETag key, generated once (readable by the owner only). Processes
    starting together agree on one key: each writes its candidate to a file of its own and
    links it into place, which only the first can do; the others read the winner's."""
    if not path.exists():
        candidate = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(AESSIV.generate_key(KEY_BYTES * 8))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(candidate, path)  # atomic, and fails if another process got there first
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} does not hold a {KEY_BYTES}-byte key")
    return key
