"""The services' router and cached representations: routing, problems, and render-once."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import orjson
import pytest
from starlette.requests import Request
from starlette.types import ASGIApp

from eventgate.http.problems import HTTPProblem
from eventgate.http.representation import Rendered, Representation, represent
from eventgate.http.router import Router, header


async def echo(request: Request) -> ASGIApp:
    body = {"id": request.path_params.get("id"), "accept": header(request, b"accept")}
    return represent("application/json", "Echo", body, lambda _: '"tag"').answer(request)


async def broken(request: Request) -> ASGIApp:
    raise RuntimeError("secret detail")


async def refused(request: Request) -> ASGIApp:
    raise HTTPProblem(409, "no", headers={"Retry-After": "3"})


ROUTER = Router(
    [
        ("/things", ["GET", "HEAD"], echo),
        ("/things/{id}", ["GET"], echo),
        ("/things/{id}", ["DELETE"], refused),
        ("/broken", ["GET"], broken),
    ]
)


async def call(method: str, path: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=ROUTER)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, headers=headers)


async def test_a_route_gets_its_path_parameters_and_headers() -> None:
    response = await call("GET", "/things/a1", accept="application/json")
    assert response.status_code == 200
    assert response.json() == {"id": "a1", "accept": "application/json"}
    assert response.headers["etag"] == '"tag"'
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-type"].startswith("application/json; charset=utf-8;")


async def test_if_none_match_with_the_etag_is_a_304_without_a_body() -> None:
    response = await call("GET", "/things/a1", **{"if-none-match": 'W/"other", "tag"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == '"tag"'
    assert "content-type" not in response.headers


async def test_an_unknown_path_is_a_404_problem() -> None:
    response = await call("GET", "/nothing/here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["instance"] == "/nothing/here"


async def test_a_method_no_route_takes_is_a_405_listing_the_allowed_ones() -> None:
    response = await call("PUT", "/things/a1")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, DELETE"
    assert response.json()["status"] == 405


async def test_a_raised_problem_keeps_its_status_and_headers() -> None:
    response = await call("DELETE", "/things/a1")
    assert (response.status_code, response.headers["retry-after"]) == (409, "3")
    assert response.json()["detail"] == "no"


async def test_an_unexpected_error_is_a_logged_500_that_reveals_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await call("GET", "/broken")
    assert response.status_code == 500
    assert "secret" not in response.text
    assert orjson.loads(response.content)["title"] == "Internal Server Error"
    assert "GET /broken failed" in caplog.text


def test_rendered_renders_once_per_source_object() -> None:
    rendered, calls = Rendered(size=2), []

    def render(body: dict[str, int]) -> Callable[[], Representation]:
        def rendering() -> Representation:
            calls.append(body)
            return represent("application/json", "M", body, lambda _: '"t"')

        return rendering

    row, same_content = {"n": 1}, {"n": 1}
    first = rendered.get(row, "json", render(row))
    assert rendered.get(row, "json", render(row)) is first
    assert rendered.get(same_content, "json", render(same_content)) is not first
    assert rendered.get(row, "xml", render(row)) is not first
    assert len(calls) == 3
    rendered.get({"n": 2}, "json", render({"n": 2}))
    assert len(rendered._entries) == 2  # bounded: the oldest went
