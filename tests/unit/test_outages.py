"""A database that is away: a 503 to the client, and a log line a minute without traceback."""

from __future__ import annotations

import logging

import asyncpg
import httpx
from starlette.requests import Request
from starlette.types import ASGIApp

from eventgate.errors import EventStoreError
from eventgate.http.problems import problem_for
from eventgate.http.router import Router
from eventgate.outages import QUIET, OutageLogFilter, unreachable


async def database_away(request: Request) -> ASGIApp:
    raise ConnectionRefusedError(111, "Connect call failed")


ROUTER = Router([("/items", ["GET"], database_away)])


async def test_an_endpoint_whose_database_is_away_answers_503_to_retry() -> None:
    transport = httpx.ASGITransport(app=ROUTER)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/items")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert "Connect call failed" not in response.text


def test_a_store_error_is_503_only_when_caused_by_an_unreachable_database() -> None:
    caused = EventStoreError("appending to PostgreSQL failed")
    caused.__cause__ = asyncpg.CannotConnectNowError("the database system is shutting down")
    assert problem_for(caused).status_code == 503
    assert problem_for(EventStoreError("one append holds at most 4 events")).status_code == 500
    assert unreachable(asyncpg.InternalClientError("cannot switch to state 15"))
    assert not unreachable(OSError(28, "No space left on device"))  # a failure, not an outage


def record(message: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error is not None else None
    return logging.LogRecord("eventgate.x", logging.ERROR, __file__, 1, message, args, exc_info)


def test_an_outage_is_logged_once_a_minute_without_traceback_and_says_what_it_held() -> None:
    now = [0.0]
    outages = OutageLogFilter(clock=lambda: now[0])
    refused = ConnectionRefusedError(111, "Connection refused")
    first = record("projections %s failed", "a, b", error=refused)
    assert outages.filter(first)
    assert first.exc_info is None and first.getMessage() == (
        "projections a, b failed ([Errno 111] Connection refused)"
    )
    now[0] = QUIET / 2
    assert not outages.filter(record("projections %s failed", "a, b", error=refused))
    assert not outages.filter(record("projections %s failed", "a, b", error=refused))
    heartbeat = record("heartbeat of %s failed (%s)", "p1", refused)  # another line: logged
    assert outages.filter(heartbeat) and heartbeat.getMessage().startswith("heartbeat of p1")
    now[0] = QUIET + 1
    again = record("projections %s failed", "a, b", error=refused)
    assert outages.filter(again)
    assert again.getMessage().endswith(f"[2 more like it in the last {QUIET:g} s]")


def test_other_failures_are_logged_each_time_with_their_traceback() -> None:
    outages = OutageLogFilter(clock=lambda: 0.0)
    for _ in range(3):
        failure = record("projections %s failed", "a", error=ValueError("a bug"))
        assert outages.filter(failure)
        assert failure.exc_info is not None


def test_a_bug_is_no_outage_even_when_raised_while_handling_one() -> None:
    assert not unreachable(asyncpg.exceptions.DataError("invalid input for query argument $1"))
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            raise ValueError("a decision of ours") from None
    except ValueError as e:
        assert not unreachable(e)
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            raise RuntimeError("append failed") from cause
    except RuntimeError as e:
        assert unreachable(e)
