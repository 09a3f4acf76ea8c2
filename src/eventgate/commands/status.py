"""Command status: what became of a command after its 202, at `/api/commands/{commandId}`.

Everything here is read from what the system already keeps, so it holds in every layout
and across restarts: the command's events (found by their `commandId` metadata), the read
models' checkpoints, the commands functions sent in answer to those events (events whose
`causationId` is one of them, recursively: a saga's steps and compensations) and the
functions' dead letters for any of them.

- `accepted`: the events are stored (their positions are listed);
- `applied`: every read model's checkpoint has passed the last of them, so a GET of the
  resources it changed (listed under `resources`) shows the change;
- `outcome` is `failed` when a function gave up on an event of the command or of its
  follow-ups (each such dead letter is listed under `failures`), else `succeeded`.

A command that changed nothing (a repeated DELETE) stores nothing, so it has no status:
its 202 says `applied` and the status URL answers 404.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.requests import Request

from eventgate.app import App
from eventgate.eventstore.model import RecordedEvent
from eventgate.eventstore.protocol import EventStore
from eventgate.functions.runner import partition_of
from eventgate.functions.state import FunctionStore
from eventgate.http.consistency import encode_token
from eventgate.http.media import JSON, response_type
from eventgate.http.problems import HTTPProblem
from eventgate.http.representation import Answer
from eventgate.projections.parking import ParkedStream
from eventgate.projections.protocol import ReadStore
from eventgate.webhooks.model import PREFIX as WEBHOOK

__all__ = ["COMMANDS_PATH", "MAX_WAIT", "CommandStatuses", "status_path_item", "status_url"]

COMMANDS_PATH = "/api/commands"
MAX_WAIT = 8.0
"""The longest `Prefer: wait` honoured: below the gateway's 10 s read timeout to services."""
MAX_FOLLOW_UPS = 100
"""At most this many follow-up events are gathered for one command (depth first capped)."""
MAX_DEPTH = 8
_MAX_ID = 200
_TRACE_ID = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_STATUS_TYPE = response_type(JSON, "CommandStatus").encode()
_POLL = (0.005, 0.1)
"""How often a wait looks at the read models' checkpoints: from 5 ms, backing off to 100 ms."""


def status_url(command_id: str) -> str:
    return f"{COMMANDS_PATH}/{command_id}"


class CommandStatuses:
    """The status of any command of one app, from its stores. `function_progress`: the
    functions' checkpoints are kept in the function store (not so when they consume from a
    broker), so an outcome can wait for them."""

    def __init__(
        self,
        store: EventStore,
        read_store: ReadStore,
        functions: FunctionStore,
        app: App,
        *,
        function_progress: bool = True,
    ) -> None:
        self._store = store
        self._read_store = read_store
        self._functions = functions
        self._app_functions = [f for f in app.functions if not f.name.startswith(WEBHOOK)]
        self._function_progress = function_progress
        self._outcomes = {e.type_name: e.outcome for e in app.events if e.outcome}
        self._item_paths: dict[str, str] = {}
        """aggregate type name -> the item path of the resource that runs its commands."""
        for resource in app.resources:
            for command in resource.commands():
                aggregate = app.commands[command].type_name
                self._item_paths.setdefault(aggregate, resource.item_paths[0])

    async def of(self, command_id: str) -> dict[str, Any] | None:
        """The status of `command_id`, or None if it stored no event."""
        events = await self._store.read_command(command_id)
        if not events:
            return None
        follow_ups, truncated = await self._follow_ups(events)
        everything = [*events, *(e for group in follow_ups for e in group)]
        parked = await self._parked(everything)
        behind = await self.behind(events, parked)
        failures = [*await self._dead_letters(everything), *(p.to_json() for p in parked)]
        functions = await self._function_states(everything, failures)
        status = self._describe(events, behind)
        status["outcome"] = self._outcome(everything, failures, functions, truncated)
        status["functions"] = functions
        status["followUps"] = [self._describe(group, None) for group in follow_ups]
        status["failures"] = failures
        if truncated:
            status["truncated"] = True
        return status

    async def get(self, request: Request) -> Answer:
        """`GET /api/commands/{id}`: the status, never cached; 404 for what stored nothing."""
        command_id = request.path_params["id"]
        status = await self.of(command_id) if len(command_id) <= _MAX_ID else None
        if status is None:
            raise HTTPProblem(404, "no command with this id stored an event (a command that "
                              "changed nothing has no status)")  # fmt: skip
        body = orjson.dumps(status)
        return Answer(200, [
            (b"content-type", _STATUS_TYPE),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode()),
        ], body)  # fmt: skip

    async def behind(
        self, events: Sequence[RecordedEvent], parked: Sequence[ParkedStream] | None = None
    ) -> list[str]:
        """The read models that have not applied `events`: their checkpoint has not reached
        the last one, or they parked one of its streams at or before it (a poison event)."""
        marks = await self._read_store.marks()
        last = max(e.position for e in events)
        blocked = {p.projection for p in (await self._parked(events) if parked is None else parked)}
        names = sorted(self._read_store.projections)
        return [n for n in names if marks.get(n, (0, 0))[0] < last or n in blocked]

    async def wait_applied(self, events: Sequence[RecordedEvent], seconds: float) -> bool:
        """Wait up to `seconds` until every read model has applied `events`; whether they
        did (at once False when one has parked their stream: no wait will change that)."""
        deadline = time.monotonic() + seconds
        pause = _POLL[0]
        while True:
            parked = await self._parked(events)
            if parked:
                return False
            if not await self.behind(events, parked):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _POLL[1])

    async def _parked(self, events: Sequence[RecordedEvent]) -> list[ParkedStream]:
        """The parked streams that hold one of `events` (parked at or before it)."""
        first: dict[str, int] = {}
        for event in events:
            first[event.stream_id] = max(first.get(event.stream_id, 0), event.position)
        found = await self._read_store.parked_streams()
        return [p for p in found if p.position <= first.get(p.stream_id, -1)]

    async def _follow_ups(
        self, events: list[RecordedEvent]
    ) -> tuple[list[list[RecordedEvent]], bool]:
        """The events caused by `events`, and by those in turn, grouped by the command (or
        function publish) that appended them, in position order; and whether the search
        stopped at MAX_FOLLOW_UPS events or MAX_DEPTH steps with more to find."""
        groups: dict[str, list[RecordedEvent]] = {}
        causes = [e.id for e in events]
        found = 0
        for _ in range(MAX_DEPTH):
            if found >= MAX_FOLLOW_UPS:
                break
            caused = await self._store.read_caused_by(causes, MAX_FOLLOW_UPS - found)
            found += len(caused)
            for event in caused:
                key = str(event.metadata.get("commandId") or event.id)
                groups.setdefault(key, []).append(event)
            causes = [e.id for e in caused]
            if not causes:
                break
        truncated = bool(causes) and bool(await self._store.read_caused_by(causes, 1))
        return sorted(groups.values(), key=lambda group: group[0].position), truncated

    async def _dead_letters(self, events: Sequence[RecordedEvent]) -> list[dict[str, Any]]:
        """What the app's functions gave up on among `events`. Webhook deliveries are left
        out: a subscriber's endpoint being down says nothing about the command."""
        letters = await self._functions.dead_letters_of(sorted({e.id for e in events}))
        return [
            {
                "function": letter.function,
                "eventId": letter.event.id,
                "eventType": letter.event.type,
                "error": f"{letter.error_type}: {letter.error_message}",
                "attempts": letter.attempts,
                "deadLetter": letter.id,
                "state": letter.status,
            }
            for letter in letters
            if not letter.function.startswith(WEBHOOK)
        ]

    async def _function_states(
        self, events: Sequence[RecordedEvent], failures: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, str]]:
        """Each app function that `events` trigger: `done` once its checkpoint in each event's
        partition has passed the event, `failed` if it dead-lettered one, else `pending`;
        `unknown` where its checkpoints are kept by a broker."""
        states: list[dict[str, str]] = []
        failed = {f.get("function") for f in failures}
        for function in self._app_functions:
            wanted = [e for e in events if function.wants(e.type)]
            if not wanted:
                continue
            if function.name in failed:
                state = "failed"
            elif not self._function_progress:
                state = "unknown"
            else:
                checkpoints = await self._functions.load_checkpoints(function.name)
                partitions = self._functions.partitions
                done = all(
                    checkpoints.get(partition_of(e.stream_id, partitions), 0) >= e.position
                    for e in wanted
                )
                state = "done" if done else "pending"
            states.append({"function": function.name, "state": state})
        return states

    def _outcome(
        self,
        events: Sequence[RecordedEvent],
        failures: Sequence[object],
        functions: Sequence[Mapping[str, str]],
        truncated: bool,
    ) -> str:
        """`failed`, `pending` (functions still to run), the outcome the app's last outcome
        event declares (`Event.outcome`, e.g. an order `rejected`), else `succeeded`."""
        if failures:
            return "failed"
        if truncated or any(f["state"] == "pending" for f in functions):
            return "pending"
        declared = [
            (e.position, self._outcomes[e.type]) for e in events if e.type in self._outcomes
        ]
        return max(declared, default=(0, "succeeded"))[1]

    def _describe(self, events: list[RecordedEvent], behind: list[str] | None) -> dict[str, Any]:
        """The command that appended `events` (its id and type, the function that sent it if
        one did; a function's published events have no command), its events and resources; with
        `behind` (the read models not yet past them), its status and consistency token."""
        first = events[0]
        command_id = first.metadata.get("commandId")
        described: dict[str, Any] = {}
        if isinstance(command_id, str):  # else events a function published itself
            described["commandId"] = command_id
            described["commandType"] = first.metadata.get("commandType")
        if "function" in first.metadata:
            described["function"] = first.metadata["function"]
        traced = _TRACE_ID.match(str(first.metadata.get("traceparent", "")))
        if traced:  # the trace to look up in the tracing backend (docs/operations.md)
            described["traceId"] = traced.group(1)
        if behind is not None:
            described["status"] = "applied" if not behind else "accepted"
            described["pendingReadModels"] = behind
            described["consistencyToken"] = encode_token(max(e.position for e in events))
        described["events"] = [
            {"id": e.id, "type": e.type, "stream": e.stream_id, "streamVersion": e.stream_version,
             "position": e.position}
            for e in events
        ]  # fmt: skip
        described["resources"] = self._resources(events)
        if isinstance(command_id, str):
            described["links"] = {"self": status_url(command_id)}
        return described

    def _resources(self, events: list[RecordedEvent]) -> list[str]:
        """The item URLs of the streams `events` changed, where a resource serves them."""
        urls: list[str] = []
        for event in events:
            path = self._item_paths.get(str(event.metadata.get("aggregate")))
            url = path.format(id=event.stream_id) if path else None
            if url and url not in urls:
                urls.append(url)
        return urls


_COMMAND_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def status_path_item() -> dict[str, Any]:
    """The OpenAPI path item of `GET /api/commands/{id}` (resources/openapi.py has the rest)."""
    event = {"type": "object", "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "stream": {"type": "string"},
        "streamVersion": {"type": "integer"}, "position": {"type": "integer"}}}  # fmt: skip
    command: dict[str, Any] = {
        "type": "object",
        "properties": {
            "commandId": {"type": "string"},
            "commandType": {"type": "string"},
            "function": {"type": "string"},
            "events": {"type": "array", "items": event},
            "resources": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["events", "resources"],
    }
    status = {
        "allOf": [command],
        "properties": {
            "status": {"enum": ["accepted", "applied"]},
            "outcome": {
                "type": "string",
                "description": "failed, pending, succeeded, or "
                "the outcome an event declares (Event.outcome)",
            },
            "functions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "function": {"type": "string"},
                        "state": {"enum": ["done", "pending", "failed", "unknown"]},
                    },
                },
            },
            "truncated": {"type": "boolean"},
            "pendingReadModels": {"type": "array", "items": {"type": "string"}},
            "consistencyToken": {"type": "string"},
            "followUps": {"type": "array", "items": command},
            "failures": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["status", "outcome", "followUps", "failures"],
    }
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        f"{COMMANDS_PATH}/{{id}}": {
            "parameters": [_COMMAND_ID],
            "get": {
                "summary": "what became of a command: accepted, applied, its follow-ups",
                "responses": {
                    "200": {
                        "description": "the command's status",
                        "content": {"application/json": {"schema": status}},
                    },
                    "404": {
                        "description": "no command with this id stored an event",
                        "content": problem,
                    },
                },
            },
        }
    }
