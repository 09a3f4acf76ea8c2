"""Rendering one representation: format by Accept, 5LMT type, ETag, conditional GET."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventgate.http.etags import parse_etags
from eventgate.http.media import JSON, XML, negotiate, response_type
from eventgate.http.problems import HTTPProblem
from eventgate.http.xml import to_xml

__all__ = ["CACHE_CONTROL", "choose_format", "render"]

CACHE_CONTROL = "max-age=0, private"


def choose_format(request: Request) -> str:
    """JSON or XML as the client's Accept prefers; 406 when it accepts neither."""
    fmt = negotiate(request.headers.get("accept"))
    if fmt is None:
        raise HTTPProblem(406, f"this resource is available as {JSON} or {XML}")
    return fmt


def render(
    request: Request,
    fmt: str,
    domain_model: str,
    body: Mapping[str, Any],
    etag: Callable[[bytes], str],
    headers: Mapping[str, str] | None = None,
) -> Response:
    """200 with the representation, or 304 when If-None-Match already holds its ETag."""
    content = orjson.dumps(body) if fmt == JSON else to_xml(domain_model, body)
    tag = etag(content)
    common = {"ETag": tag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept", **(headers or {})}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        if tags is None or any(t.removeprefix("W/") == tag for t in tags):
            return Response(status_code=304, headers=common)
    return Response(content, 200, common, response_type(fmt, domain_model))
