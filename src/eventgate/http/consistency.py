"""Consistency tokens: the opaque form of a log position a client can wait for."""

from __future__ import annotations

import base64
import binascii

from eventgate.http.problems import HTTPProblem

__all__ = ["decode_token", "encode_token"]

_PREFIX = "eg1:"


def encode_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{position}".encode()).rstrip(b"=").decode()


def decode_token(token: str) -> int:
    """The position inside `token`; a 400 problem when it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        position = int(text.removeprefix(_PREFIX))
        if position < 0 or len(token) > 64:
            raise ValueError(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise HTTPProblem(400, "malformed Consistency-Token") from None
    return position
