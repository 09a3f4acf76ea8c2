"""What the function store keeps, and the port every backend of it (SQLite, PostgreSQL) fills."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from eventgate.functions.model import FunctionEvent

__all__ = [
    "DEFAULT_PARTITIONS",
    "DeadLetterRecord",
    "FunctionStatus",
    "FunctionStore",
    "Lease",
    "RegisteredFunction",
    "alive",
    "dumps",
    "letter",
    "settings_of",
]

DEFAULT_PARTITIONS = 16


class RegisteredFunction(Protocol):
    """What the registry records of a function (an `api.Function`): name, triggers, settings."""

    @property
    def name(self) -> str: ...
    @property
    def on(self) -> tuple[str, ...]: ...
    @property
    def retries(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def max_age(self) -> float | None: ...


@dataclass(frozen=True)
class DeadLetterRecord:
    """An event a function gave up on, and why."""

    id: int
    function: str
    event: FunctionEvent
    error_type: str
    error_message: str
    attempts: int
    first_failure: datetime
    last_failure: datetime
    status: str  # "dead", or "replay" once a replay is requested and not yet done

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": self.function,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_failure": self.first_failure.isoformat(),
            "last_failure": self.last_failure.isoformat(),
            "event": self.event.to_json(),
        }


@dataclass(frozen=True)
class FunctionStatus:
    """One registered function as `functions list` shows it."""

    name: str
    triggers: list[str]
    checkpoint: int
    invocations: int
    failures: int
    dead_letters: int


@dataclass(frozen=True)
class Lease:
    """What one rebalance left this worker: its partitions and its fair share."""

    owned: frozenset[int]
    fair_share: int


class FunctionStore(Protocol):
    """Checkpoints, leases, dead letters and effect records of every function."""

    partitions: int

    async def close(self) -> None: ...
    async def register(self, functions: Sequence[RegisteredFunction]) -> None: ...
    async def load_checkpoints(self, function: str) -> dict[int, int]: ...
    async def save_progress(
        self,
        function: str,
        owner: str,
        checkpoints: Mapping[int, int],
        invocations: int = 0,
        failures: int = 0,
    ) -> frozenset[int]: ...
    async def status(self) -> list[FunctionStatus]: ...
    async def rebalance(self, worker: str, ttl: float, release: Iterable[int] = ()) -> Lease: ...
    async def leave(self, worker: str) -> None: ...
    async def dead_letter(
        self,
        function: str,
        partition: int,
        event: FunctionEvent,
        error: tuple[str, str],
        attempts: int,
        first_failure: datetime,
    ) -> None: ...
    async def dead_letters(self, function: str | None = None) -> list[DeadLetterRecord]: ...
    async def dead_letters_of(self, event_ids: Sequence[str]) -> list[DeadLetterRecord]:
        """The dead letters of any function for the events `event_ids` (by an index)."""
        ...

    async def dead_letter_by_id(self, letter_id: int) -> DeadLetterRecord: ...
    async def request_replay(
        self, letter_id: int | None = None, function: str | None = None
    ) -> int: ...
    async def discard(self, letter_id: int) -> None: ...
    async def replays(
        self, function: str, partitions: Iterable[int], skip: Iterable[int]
    ) -> list[tuple[int, int, FunctionEvent]]: ...
    async def replayed(self, letter_id: int) -> None: ...
    async def effect(self, function: str, event_id: str, name: str) -> tuple[bool, Any]: ...
    async def record_effect(self, function: str, event_id: str, name: str, result: Any) -> None: ...
    async def forget_effects(self, function: str, event_ids: Iterable[str]) -> None: ...
    async def purge(self, function: str) -> int:
        """Delete all that is kept of `function` (registry row, checkpoints, dead letters,
        effect records) in one transaction; how many rows that was."""
        ...

    async def names(self) -> set[str]:
        """Every function the store keeps anything of, registered or not."""
        ...


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def settings_of(f: RegisteredFunction) -> dict[str, Any]:
    return {
        "retries": f.retries,
        "timeout": f.timeout,
        "concurrency": f.concurrency,
        "max_age": f.max_age,
    }


def letter(row: tuple[Any, ...]) -> DeadLetterRecord:
    letter_id, function, event, error_type, message, attempts, first, last, status = row
    return DeadLetterRecord(
        letter_id,
        function,
        FunctionEvent.from_json(orjson.loads(event)),
        error_type,
        message,
        attempts,
        datetime.fromisoformat(first),
        datetime.fromisoformat(last),
        status,
    )
