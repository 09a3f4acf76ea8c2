"""The command API: an ASGI app that turns POST, PUT and DELETE into inventory commands.

Every success is 202 Accepted, sent only after the events are durably appended and the
concurrency check is done; a conflict is answered now, never discovered later.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import msgspec
import orjson
import uuid_utils
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventgate.commands.handler import CommandHandler, CommandResult
from eventgate.commands.idempotency import (
    IdempotencyStore,
    InFlight,
    Mismatch,
    Replay,
)
from eventgate.domain.inventory import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    DeactivateInventoryItem,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)
from eventgate.domain.messages import Command
from eventgate.errors import AggregateNotFound, EventgateError
from eventgate.http.consistency import encode_token
from eventgate.http.etags import ETagCipher, parse_etags
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.media import JSON, parse_media_type, response_type
from eventgate.http.problems import HTTPProblem, problem_for, render_error

__all__ = ["command_app"]

_REPLAYED_HEADERS = ("location", "consistency-token", "content-type", "command-id")


class CreateBody(msgspec.Struct):
    name: str
    id: str | None = None


class RenameBody(msgspec.Struct):
    newName: str


class CountBody(msgspec.Struct):
    count: int | str


STOCK_COMMANDS: Mapping[str, Callable[[str, int], Command]] = {
    "CheckInItemsToInventory": CheckInItemsToInventory,
    "RemoveItemsFromInventory": RemoveItemsFromInventory,
}

Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


class InventoryCommands:
    """One endpoint per route; each parses, checks preconditions and executes one command."""

    def __init__(self, handler: CommandHandler, cipher: ETagCipher, item_url: str) -> None:
        self._handler = handler
        self._cipher = cipher
        self._item_url = item_url

    async def create(self, request: Request) -> Response:
        _command_model(request, "CreateInventoryItem", required=False)
        body = _decode(await request.body(), CreateBody)
        item_id = _client_id(body.id) if body.id is not None else str(uuid_utils.uuid4())
        return await self._execute(request, CreateInventoryItem(item_id, body.name), None)

    async def rename(self, request: Request) -> Response:
        _command_model(request, "RenameInventoryItem", required=False)
        body = _decode(await request.body(), RenameBody)
        command = RenameInventoryItem(request.path_params["id"], body.newName)
        return await self._execute(request, command, request.headers.get("if-match"))

    async def deactivate(self, request: Request) -> Response:
        if request.headers.get("content-type"):
            _command_model(request, "DeactivateInventoryItem", required=False)
        command = DeactivateInventoryItem(request.path_params["id"])
        return await self._execute(request, command, request.headers.get("if-match"))

    async def stock(self, request: Request) -> Response:
        model = _command_model(request, *STOCK_COMMANDS, required=True)
        body = _decode(await request.body(), CountBody)
        command = STOCK_COMMANDS[model](request.path_params["id"], _count(body.count))
        return await self._execute(request, command, request.headers.get("if-match"))

    async def _execute(self, request: Request, command: Command, if_match: str | None) -> Response:
        expected = self._expected_version(command.id, if_match)
        metadata = {
            "correlationId": request.headers.get(REQUEST_ID_HEADER) or str(uuid_utils.uuid4())
        }
        consumer = request.headers.get(CONSUMER_HEADER)
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
        return self._accepted(result)

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

    def _accepted(self, result: CommandResult) -> Response:
        token = encode_token(result.position)
        body = {"commandId": result.command_id, "id": result.stream_id, "consistencyToken": token}
        headers = {
            "Location": self._item_url.format(id=result.stream_id),
            "Consistency-Token": token,
            "Command-Id": result.command_id,
        }
        return Response(orjson.dumps(body), 202, headers, response_type(JSON, "CommandAccepted"))


def _command_model(request: Request, *accepted: str, required: bool) -> str:
    """The command named by Content-Type's domain-model (the `Command` suffix is allowed)."""
    header = request.headers.get("content-type")
    media = parse_media_type(header) if header else None
    if media is None or not media.is_json:
        raise HTTPProblem(415, f"send the body as {JSON}", accepted=list(accepted))
    model = media.params.get("domain-model")
    if model is None and not required:
        return accepted[0]
    model = (model or "").removesuffix("Command")
    if model not in accepted:
        raise HTTPProblem(
            415,
            f"Content-Type needs domain-model= one of {', '.join(accepted)}",
            accepted=list(accepted),
        )
    return model


def _decode(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as e:
        raise HTTPProblem(422, str(e)) from None
    except msgspec.DecodeError as e:
        raise HTTPProblem(400, f"malformed JSON: {e}") from None


def _client_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise HTTPProblem(422, "id must be a UUID") from None


def _count(raw: int | str) -> int:
    if isinstance(raw, str):
        if not raw.strip().isdigit():
            raise HTTPProblem(422, "count must be a positive integer")
        return int(raw)
    return raw


def idempotent(store: IdempotencyStore, endpoint: Endpoint) -> Endpoint:
    """Wrap a POST endpoint with Idempotency-Key handling (see commands/idempotency.py)."""

    async def wrapped(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key is None:
            return await endpoint(request)
        if not 1 <= len(key) <= 255:
            raise HTTPProblem(400, "Idempotency-Key must be 1 to 255 characters")
        consumer = request.headers.get(CONSUMER_HEADER, "")
        scope = "\n".join((consumer, request.method, request.url.path, key))
        digest = hashlib.sha256(request.headers.get("content-type", "").encode())
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
        kept = {k: v for k, v in response.headers.items() if k in _REPLAYED_HEADERS}
        await store.complete(scope, response.status_code, kept, bytes(response.body))
        return response

    return wrapped


async def _answer(request: Request, endpoint: Endpoint) -> Response:
    """The endpoint's response, with problems rendered (so they can be stored too)."""
    try:
        return await endpoint(request)
    except HTTPProblem as e:
        return e.response(request.url.path)
    except EventgateError as e:
        return problem_for(e, request.url.path)


def command_app(
    handler: CommandHandler,
    cipher: ETagCipher,
    idempotency: IdempotencyStore,
    *,
    paths: Mapping[str, Sequence[str]],
) -> Starlette:
    """The command ASGI app; `paths` maps "collection"/"item" to their URL patterns."""
    commands = InventoryCommands(handler, cipher, paths["item"][0])
    routes = []
    for path in paths["collection"]:
        routes.append(Route(path, idempotent(idempotency, commands.create), methods=["POST"]))
    for path in paths["item"]:
        routes.append(Route(path, idempotent(idempotency, commands.stock), methods=["POST"]))
        routes.append(Route(path, commands.rename, methods=["PUT"]))
        routes.append(Route(path, commands.deactivate, methods=["DELETE"]))
    handlers = {
        HTTPProblem: render_error,
        EventgateError: render_error,
        HTTPException: render_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers)
