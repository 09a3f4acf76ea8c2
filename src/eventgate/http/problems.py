"""RFC 9457 problem details, and the one table that maps eventgate's errors to statuses."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from eventgate.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    ConcurrencyError,
    DeadLetterNotFound,
    EventgateError,
    InvalidCommand,
    RuleViolation,
)
from eventgate.outages import unreachable

__all__ = [
    "PROBLEM_JSON",
    "HTTPProblem",
    "problem",
    "problem_body",
    "problem_for",
    "render_error",
    "unavailable",
]

PROBLEM_JSON = "application/problem+json"

# Walked along the exception's class hierarchy, most specific first (as Starlette does).
_STATUS: Mapping[type[Exception], int] = {
    AggregateNotFound: 404,
    DeadLetterNotFound: 404,
    AggregateAlreadyExists: 409,
    ConcurrencyError: 412,
    RuleViolation: 409,
    InvalidCommand: 422,
}


class HTTPProblem(Exception):
    """An answer other than success, raised anywhere in a handler and rendered once."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: object,
    ) -> None:
        super().__init__(detail or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def response(self, instance: str | None = None) -> Response:
        return problem(self.status, self.detail, self.headers, instance, **self.extensions)


def problem(
    status: int,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
    **extensions: object,
) -> Response:
    """A problem+json response; `type` stays about:blank, the title is the status phrase."""
    body = problem_body(status, detail, instance, **extensions)
    return Response(orjson.dumps(body), status, dict(headers or {}), PROBLEM_JSON)


def problem_body(
    status: int, detail: str | None = None, instance: str | None = None, **extensions: object
) -> dict[str, object]:
    """The members of a problem (also what the gateway exports answer with)."""
    body: dict[str, object] = {"type": "about:blank", "title": HTTPStatus(status).phrase}
    body["status"] = status
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return body


def unavailable(instance: str | None = None) -> Response:
    """The answer while the database cannot be reached: 503, to retry (not the server's bug)."""
    detail = "the database cannot be reached now; try again shortly"
    return problem(503, detail, {"Retry-After": "5"}, instance)


def problem_for(error: EventgateError, instance: str | None = None) -> Response:
    """The response for a domain or store error; a store that cannot reach its database is
    a 503, unknown kinds are a 500 without details."""
    if unreachable(error):
        return unavailable(instance)
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return problem(status, str(error), instance=instance)
    return problem(500, "the server could not complete the request", instance=instance)


async def render_error(request: Request, error: Exception) -> Response:
    """Starlette exception handler: every error an app raises, as problem+json."""
    if isinstance(error, HTTPProblem):
        return error.response(request.url.path)
    if isinstance(error, EventgateError):
        return problem_for(error, request.url.path)
    if isinstance(error, HTTPException):
        return problem(error.status_code, error.detail, error.headers, request.url.path)
    if unreachable(error):
        return unavailable(request.url.path)
    return problem(500, "the server could not complete the request")
