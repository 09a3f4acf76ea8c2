"""Rendering one representation: format by Accept, 5LMT type, ETag, conditional GET.

A representation is rendered once per change of what it shows (`Rendered` keeps it beside
the read cache's row or page), so a repeated GET costs a lookup and two ASGI messages.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from eventgate.http.etags import parse_etags
from eventgate.http.media import JSON, XML, negotiate, response_type
from eventgate.http.problems import HTTPProblem
from eventgate.http.router import header
from eventgate.http.xml import to_xml

__all__ = ["CACHE_CONTROL", "Answer", "Rendered", "Representation", "choose_format", "represent"]

CACHE_CONTROL = "max-age=0, private"
_COMMON = ((b"cache-control", CACHE_CONTROL.encode()), (b"vary", b"Accept"))


def choose_format(request: Request) -> str:
    """JSON or XML as the client's Accept prefers; 406 when it accepts neither."""
    fmt = _negotiated(header(request, b"accept"))
    if fmt is None:
        raise HTTPProblem(406, f"this resource is available as {JSON} or {XML}")
    return fmt


@lru_cache(maxsize=256)
def _negotiated(accept: str | None) -> str | None:
    return negotiate(accept)


@lru_cache(maxsize=256)
def _content_type(fmt: str, domain_model: str) -> bytes:
    return response_type(fmt, domain_model).encode()


@dataclass(frozen=True, slots=True)
class Representation:
    """A rendered body, its ETag, and the headers of a 304 and of a 200 carrying it."""

    content: bytes
    etag: str
    not_modified: tuple[tuple[bytes, bytes], ...]
    ok: tuple[tuple[bytes, bytes], ...]

    def answer(self, request: Request, headers: Mapping[str, str] | None = None) -> Answer:
        """200 with the representation, or 304 when If-None-Match already holds its ETag."""
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()] if headers else []
        if_none_match = header(request, b"if-none-match")
        if if_none_match is not None:
            tags = parse_etags(if_none_match)
            if tags is None or any(t.removeprefix("W/") == self.etag for t in tags):
                return Answer(304, [*self.not_modified, *extra], b"")
        return Answer(200, [*self.ok, *extra], self.content)


def represent(
    fmt: str, domain_model: str, body: Mapping[str, Any], etag: Callable[[bytes], str]
) -> Representation:
    """Render `body` as `fmt` with the ETag `etag` gives for its bytes."""
    content = orjson.dumps(body) if fmt == JSON else to_xml(domain_model, body)
    tag = etag(content)
    not_modified = ((b"etag", tag.encode()), *_COMMON)
    ok = (
        *not_modified,
        (b"content-type", _content_type(fmt, domain_model)),
        (b"content-length", str(len(content)).encode()),
    )
    return Representation(content, tag, not_modified, ok)


class Rendered:
    """Representations kept beside the object they were rendered from (a row or page of the
    read cache): the same object gives back the same representation, a new one (after a
    change evicted the old) renders again. Holds at most `size`, the oldest dropped first."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._entries: dict[Hashable, tuple[object, Representation]] = {}

    def get(self, source: object, fmt: str, render: Callable[[], Representation]) -> Representation:
        key = (id(source), fmt)  # the entry holds `source`, so its id is not reused meanwhile
        entry = self._entries.get(key)
        if entry is not None and entry[0] is source:
            return entry[1]
        representation = render()
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (source, representation)
        return representation


class Answer:
    """A response whose headers are raw bytes already: two ASGI messages, nothing more. Reads
    like Starlette's `Response` where callers look (status_code, raw_headers, body)."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})
