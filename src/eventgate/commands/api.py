"""The command API: an ASGI app that turns POST, PUT and DELETE into the app's commands.

Every success is 202 Accepted, sent only after the events are durably appended and the
concurrency check is done; a conflict is answered now, never discovered later. The 202 points
to the command's status (`Link: </api/commands/{id}>; rel="monitor"`); with `Prefer: wait=N`
(RFC 7240) it comes only once the read models have applied the command (then 200) or after N
seconds (at most MAX_WAIT), whichever is first.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence

import orjson
import uuid_utils
from starlette.requests import Request
from starlette.responses import Response

from eventgate.commands.handler import CommandHandler, CommandResult
from eventgate.commands.idempotency import (
    IdempotencyStore,
    InFlight,
    Mismatch,
    Replay,
)
from eventgate.commands.status import MAX_WAIT, CommandStatuses, status_url
from eventgate.domain.messages import Command
from eventgate.errors import AggregateNotFound, ConcurrencyError, EventgateError
from eventgate.http.consistency import encode_token
from eventgate.http.etags import ETagCipher, parse_etags
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.media import JSON, parse_media_type, response_type
from eventgate.http.problems import HTTPProblem, problem_for
from eventgate.http.representation import Answer
from eventgate.http.router import Router, header
from eventgate.resources.bodies import decode_command, reads_body
from eventgate.resources.declaration import Resource

__all__ = ["command_app"]

_CONSUMER = CONSUMER_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_ACCEPTED_TYPE = response_type(JSON, "CommandAccepted").encode()
_REPLAYED_HEADERS = (
    "location", "consistency-token", "content-type", "command-id", "link", "preference-applied"
)  # fmt: skip
_PARTS = {sep: re.compile(rf'(?:[^{sep}"]|"[^"]*")+') for sep in ",;"}
"""The comma-separated preferences of a Prefer header, or the ;-separated parts of one,
where a quoted string may hold either separator (RFC 7240 §2)."""

Reply = Response | Answer
Endpoint = Callable[[Request], Awaitable[Reply]]


class ResourceCommands:
    """The command endpoints of one resource: each parses, checks preconditions, executes."""

    def __init__(
        self,
        resource: Resource,
        handler: CommandHandler,
        cipher: ETagCipher,
        statuses: CommandStatuses | None = None,
    ) -> None:
        self._resource = resource
        self._handler = handler
        self._cipher = cipher
        self._statuses = statuses
        self._item_url = resource.item_paths[0]
        self._item_commands = resource.item_commands()  # method -> commands, read per request

    async def create(self, request: Request) -> Reply:
        creating = self._resource.create
        if creating is None:  # only routed when declared
            raise HTTPProblem(405)
        _command_model(request, creating)
        command = decode_command(creating, await request.body(), None, creates=True)
        return await self._execute(request, command, None)

    async def item(self, request: Request) -> Reply:
        """PUT, POST or DELETE on an item: the command the method and domain-model name."""
        declared = self._item_commands[request.method]
        raw = await request.body()
        if header(request, b"content-type") or reads_body(declared) or len(declared) > 1:
            kind = _command_model(request, *declared)
        else:
            kind = declared[0]
        command = decode_command(kind, raw, request.path_params["id"])
        return await self._execute(request, command, header(request, b"if-match"))

    async def _execute(self, request: Request, command: Command, if_match: str | None) -> Reply:
        expected = self._expected_version(command.id, if_match)
        metadata = {"correlationId": header(request, _REQUEST_ID) or str(uuid_utils.uuid4())}
        consumer = header(request, _CONSUMER)
        if consumer:
            metadata["consumer"] = consumer
        try:
            result = await self._handler.execute(
                command, expected_version=expected, metadata=metadata
            )
        except AggregateNotFound:
            if if_match is not None and if_match.strip() == "*":
                raise HTTPProblem(412, "If-Match: * but the item does not exist") from None
            raise
        except ConcurrencyError:
            raise HTTPProblem(412, "If-Match does not name the current version") from None
        wait = _wait_preference(header(request, b"prefer"))
        if wait is None or self._statuses is None:
            return self._accepted(result)
        applied = not result.events or await self._statuses.wait_applied(result.events, wait)
        return self._accepted(result, applied, waited=wait)

    def _expected_version(self, item_id: str, if_match: str | None) -> int | None:
        """The version an If-Match names: None for none or `*`, 412 if none is ours."""
        if if_match is None:
            return None
        tags = parse_etags(if_match)
        if tags is None:
            return None
        for tag in tags:
            version = self._cipher.open(tag, item_id)
            if version is not None:
                return version
        raise HTTPProblem(412, "If-Match does not name a current version of this item")

    def _accepted(
        self, result: CommandResult, applied: bool = False, waited: float | None = None
    ) -> Answer:
        """202 with the command's id, token and status link; 200 once `applied` after a wait.
        A command that changed nothing stored nothing: it is applied and has no status."""
        token = encode_token(result.position)
        location = self._item_url.format(id=result.stream_id)
        applied = applied or not result.events
        body: dict[str, object] = {
            "commandId": result.command_id,
            "id": result.stream_id,
            "consistencyToken": token,
            "status": "applied" if applied else "accepted",
        }
        headers = [
            (b"location", location.encode()),
            (b"consistency-token", token.encode()),
            (b"command-id", result.command_id.encode()),
            (b"content-type", _ACCEPTED_TYPE),
        ]
        if result.events:
            monitor = status_url(result.command_id)
            body["links"] = {"status": monitor, "resource": location}
            headers.append((b"link", f'<{monitor}>; rel="monitor"'.encode()))
        if waited is not None:
            headers.append((b"preference-applied", f"wait={waited:g}".encode()))
        content = orjson.dumps(body)
        headers.append((b"content-length", str(len(content)).encode()))
        return Answer(200 if applied and waited is not None else 202, headers, content)


def _command_model(request: Request, *accepted: type[Command]) -> type[Command]:
    """The command named by Content-Type's domain-model (the `Command` suffix is allowed);
    optional when only one command is accepted here."""
    names = [command.__name__ for command in accepted]
    content_type = header(request, b"content-type")
    media = parse_media_type(content_type) if content_type else None
    if media is None or not media.is_json:
        raise HTTPProblem(415, f"send the body as {JSON}", accepted=names)
    model = media.params.get("domain-model")
    if model is None and len(accepted) == 1:
        return accepted[0]
    model = (model or "").removesuffix("Command")
    if model not in names:
        raise HTTPProblem(
            415, f"Content-Type needs domain-model= one of {', '.join(names)}", accepted=names
        )
    return accepted[names.index(model)]


def _wait_preference(prefer: str | None) -> float | None:
    """Seconds of a `wait` preference (RFC 7240 §4.3, delta-seconds; capped at MAX_WAIT),
    or None without one. Only a preference's own name counts, not one of its parameters."""
    for preference in _PARTS[","].findall(prefer or ""):
        name, _, value = (_PARTS[";"].findall(preference) or [""])[0].partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "wait" and value.isdigit() and len(value) <= 9:
            return min(float(value), MAX_WAIT)
    return None


def idempotent(store: IdempotencyStore, endpoint: Endpoint) -> Endpoint:
    """Wrap a POST endpoint with Idempotency-Key handling (see commands/idempotency.py)."""

    async def wrapped(request: Request) -> Reply:
        key = header(request, b"idempotency-key")
        if key is None:
            return await endpoint(request)
        if not 1 <= len(key) <= 255:
            raise HTTPProblem(400, "Idempotency-Key must be 1 to 255 characters")
        consumer = header(request, _CONSUMER) or ""
        scope = "\n".join((consumer, request.method, request.url.path, key))
        digest = hashlib.sha256((header(request, b"content-type") or "").encode())
        digest.update(await request.body())
        outcome = await store.claim(scope, digest.hexdigest())
        if isinstance(outcome, Replay):
            headers = {**outcome.headers, "Idempotent-Replayed": "true"}
            return Response(outcome.body, outcome.status, headers)
        if isinstance(outcome, Mismatch):
            raise HTTPProblem(422, "this Idempotency-Key was used for a different request")
        if isinstance(outcome, InFlight):
            raise HTTPProblem(409, "a request with this Idempotency-Key is still in progress")
        try:
            response = await _answer(request, endpoint)
        except BaseException:
            await store.release(scope)
            raise
        if response.status_code >= 500:
            await store.release(scope)
            return response
        kept = {
            name: value.decode("latin-1")
            for raw, value in response.raw_headers
            if (name := raw.decode("latin-1").lower()) in _REPLAYED_HEADERS
        }
        await store.complete(scope, response.status_code, kept, bytes(response.body))
        return response

    return wrapped


async def _answer(request: Request, endpoint: Endpoint) -> Reply:
    """The endpoint's response, with problems rendered (so they can be stored too)."""
    try:
        return await endpoint(request)
    except HTTPProblem as e:
        return e.response(request.url.path)
    except EventgateError as e:
        return problem_for(e, request.url.path)


def command_app(
    resources: Sequence[Resource],
    handler: CommandHandler,
    cipher: ETagCipher,
    idempotency: IdempotencyStore,
    statuses: CommandStatuses | None = None,
) -> Router:
    """The command ASGI app of `resources`; every POST honours Idempotency-Key; with
    `statuses`, every command honours `Prefer: wait`."""
    routes: list[tuple[str, list[str], Endpoint]] = []
    for resource in resources:
        commands = ResourceCommands(resource, handler, cipher, statuses)
        methods = resource.item_commands()
        for path in resource.collection_paths if resource.create else ():
            routes.append((path, ["POST"], idempotent(idempotency, commands.create)))
        for path in resource.item_paths:
            for method in methods:
                endpoint: Endpoint = commands.item
                if method == "POST":
                    endpoint = idempotent(idempotency, endpoint)
                routes.append((path, [method], endpoint))
    return Router(routes)
