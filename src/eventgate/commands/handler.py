"""The command side's service: load an aggregate, let it decide, append what it recorded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import uuid_utils
from cachetools import LRUCache

from eventgate.domain.aggregate import Aggregate
from eventgate.domain.messages import Command
from eventgate.errors import (
    AggregateAlreadyExists,
    AggregateNotFound,
    ConcurrencyError,
    ConfigError,
    DomainError,
)
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.model import RecordedEvent
from eventgate.eventstore.protocol import NO_STREAM, EventStore
from eventgate.tracing import spans as tracing

__all__ = ["CommandHandler", "CommandResult"]

_RACE_RETRIES = 10
_CACHED_STREAMS = 2048
_CACHED_EVENTS = 32
"""Histories kept in memory: up to this many streams, each of at most this many events."""
_REFUSALS = (ConcurrencyError, AggregateNotFound, AggregateAlreadyExists, DomainError)
"""What a decision may answer instead of appending; none of them has written anything."""


@dataclass(frozen=True)
class CommandResult:
    """What one executed command did. `position` is the read-your-writes token."""

    command_id: str
    stream_id: str
    version: int
    position: int
    events: list[RecordedEvent] = field(default_factory=list)


class CommandHandler:
    """Executes commands against the aggregates they target; exactly one handler per command.

    The order of checks is the HTTP contract's: unknown aggregate (404) or taken id (409),
    then the caller's expected version (412), then the aggregate's own rules (409/422).

    Streams this handler read or wrote keep their history in memory, so a command on a
    known stream decides without reading it again. Another process may have appended since,
    so a decision on remembered history stands only when its append succeeds (the store's
    expected-version check proves the history was the whole stream); a refusal or a no-op
    is decided again on the stored history before it is answered.
    """

    def __init__(
        self,
        store: EventStore,
        codec: EventCodec,
        routes: Mapping[type[Command], type[Aggregate]],
    ) -> None:
        if not routes:
            raise ConfigError("a command handler needs at least one command route")
        self._store = store
        self._codec = codec
        self._routes = dict(routes)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._histories: LRUCache[str, list[Frozen]] = LRUCache(_CACHED_STREAMS)

    async def load(self, aggregate_type: type[Aggregate], stream_id: str) -> Aggregate:
        """The aggregate as of its latest stored event (a fresh one if it has none)."""
        return self._replay(aggregate_type, stream_id, await self._store.read_stream(stream_id))

    async def execute(
        self,
        command: Command,
        *,
        expected_version: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        command_id: str | None = None,
    ) -> CommandResult:
        """Decide and append; on a race with another writer, decide again on fresh state.

        A caller-given `command_id` makes the command repeatable: when events of that id
        are already in the stream, their result is returned and nothing is appended."""
        aggregate_type = self._routes.get(type(command))
        if aggregate_type is None:
            raise ConfigError(f"no aggregate handles {type(command).__name__}")
        repeatable = command_id is not None
        command_id = command_id or str(uuid_utils.uuid7())  # time-ordered: cheap to index
        name = type(command).__name__
        traced = {"eventgate.command.id": command_id, "eventgate.stream": command.id}
        with tracing.span(f"command {name}", traced) as span:
            metadata = {
                "correlationId": command_id,
                "causationId": command_id,
                **(metadata or {}),
                **tracing.carried(),  # this span: what the events cause continues the trace
                "commandId": command_id,
                "commandType": name,
                "aggregate": aggregate_type.type_name,
            }
            call = _Call(aggregate_type, command, expected_version, metadata, command_id,
                         repeatable)  # fmt: skip
            result = await self._execute(call)
            if span is not None:
                span.set_attribute("eventgate.position", result.position)
                span.set_attribute("eventgate.events", len(result.events))
            return result

    async def _execute(self, call: _Call) -> CommandResult:
        races = 0
        while True:
            try:
                async with self._serialised(call.command.id):
                    return await self._attempt(call)
            except ConcurrencyError:
                races += 1
                if call.expected_version is not None or races >= _RACE_RETRIES:
                    raise

    @contextlib.asynccontextmanager
    async def _serialised(self, stream_id: str) -> AsyncIterator[None]:
        """One command per stream at a time in this process, so they never race each other;
        only writers in other processes can still cause a (retried) concurrency error."""
        lock, users = self._locks.get(stream_id, (asyncio.Lock(), 0))
        self._locks[stream_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[stream_id]
            if users == 1:
                del self._locks[stream_id]
            else:
                self._locks[stream_id] = (lock, users - 1)

    async def _attempt(self, call: _Call) -> CommandResult:
        command = call.command
        if command.creates and call.expected_version in (None, NO_STREAM):
            try:
                return await self._create(call)
            except AggregateAlreadyExists:
                done = await self._done_before(call) if call.repeatable else None
                if done is None:
                    raise
                return done
        remembered = self._histories.get(command.id)
        if remembered is not None:
            try:
                result = await self._decide(call, _thawed(remembered), remembered)
                if result.events:
                    return result  # appended: the remembered history was the whole stream
            except _REFUSALS:
                pass
            self._histories.pop(command.id, None)
        history = await self._store.read_stream(command.id)
        frozen = _frozen(history) if len(history) < _CACHED_EVENTS else None  # before replay
        return await self._decide(call, history, frozen)

    async def _decide(
        self, call: _Call, history: list[RecordedEvent], frozen: list[Frozen] | None
    ) -> CommandResult:
        """Decide on `history` and append; `frozen` is the same history as stored (replay may
        hand its data to the aggregate, which may change it), remembered with the new events."""
        aggregate_type, command, command_id = call.aggregate_type, call.command, call.command_id
        expected_version = call.expected_version
        if history and history[0].metadata.get("aggregate", aggregate_type.type_name) != (
            aggregate_type.type_name
        ):
            raise AggregateNotFound(command.id)  # the id names another kind of aggregate
        done = _done_in(history, command, command_id) if call.repeatable else None
        if done is not None:
            return done
        aggregate = self._replay(aggregate_type, command.id, history)
        last_position = history[-1].position if history else 0
        if command.creates and aggregate.exists:
            raise AggregateAlreadyExists(command.id)
        if not command.creates and not aggregate.exists:
            raise AggregateNotFound(command.id)
        if expected_version is not None and expected_version != aggregate.version:
            raise ConcurrencyError(command.id, expected_version, aggregate.version)
        loaded_version = aggregate.version
        aggregate.handle(command)
        pending = [self._codec.encode(e, call.metadata) for e in aggregate.collect_pending()]
        if not pending:
            return CommandResult(command_id, command.id, loaded_version, last_position)
        recorded = await self._store.append(command.id, pending, expected_version=loaded_version)
        if frozen is not None:
            self._remember(command.id, [*frozen, *_frozen(recorded)])
        return CommandResult(
            command_id, command.id, recorded[-1].stream_version, recorded[-1].position, recorded
        )

    async def _create(self, call: _Call) -> CommandResult:
        """A creating command needs no history: decide on a fresh aggregate and let the
        store's NO_STREAM check refuse an id that is taken (one read fewer per create)."""
        command, command_id = call.command, call.command_id
        aggregate = call.aggregate_type(command.id)
        aggregate.handle(command)
        pending = [self._codec.encode(e, call.metadata) for e in aggregate.collect_pending()]
        try:
            recorded = await self._store.append(command.id, pending, expected_version=NO_STREAM)
        except ConcurrencyError:
            raise AggregateAlreadyExists(command.id) from None
        self._remember(command.id, _frozen(recorded))
        return CommandResult(
            command_id, command.id, recorded[-1].stream_version, recorded[-1].position, recorded
        )

    def _remember(self, stream_id: str, history: list[Frozen]) -> None:
        if len(history) <= _CACHED_EVENTS:
            self._histories[stream_id] = history
        else:
            self._histories.pop(stream_id, None)

    async def _done_before(self, call: _Call) -> CommandResult | None:
        history = await self._store.read_stream(call.command.id)
        return _done_in(history, call.command, call.command_id)

    def _replay(
        self, aggregate_type: type[Aggregate], stream_id: str, history: list[RecordedEvent]
    ) -> Aggregate:
        return aggregate_type.replay(stream_id, map(self._codec.decode, history))


@dataclass(frozen=True)
class _Call:
    """One `execute`: what every attempt at it decides with."""

    aggregate_type: type[Aggregate]
    command: Command
    expected_version: int | None
    metadata: dict[str, Any]
    command_id: str
    repeatable: bool


Frozen = tuple[RecordedEvent, bytes, bytes]
"""A remembered event: its data and metadata as the JSON the store holds, so no object a
replay or a caller may change is shared between commands."""


def _frozen(events: list[RecordedEvent]) -> list[Frozen]:
    return [(e, orjson.dumps(e.data), orjson.dumps(e.metadata)) for e in events]


def _thawed(frozen: list[Frozen]) -> list[RecordedEvent]:
    """Fresh events, as a read of the stream would return them."""
    return [e._replace(data=orjson.loads(d), metadata=orjson.loads(m)) for e, d, m in frozen]


def _done_in(
    history: list[RecordedEvent], command: Command, command_id: str
) -> CommandResult | None:
    """The result of `command_id` if its events are already in `history`: a command sent
    again with the id it was first sent with (a function's `ctx.send` on redelivery) is
    answered with what it did then, not applied twice."""
    events = [e for e in history if e.metadata.get("commandId") == command_id]
    if not events:
        return None
    last = events[-1]
    return CommandResult(command_id, command.id, last.stream_version, last.position, events)
