"""The suite's own app: boards and their tasks, two aggregates and two resources, served by
`eventgate up --app tests.e2e.apps.taskboard:app` to prove any app gets the whole contract."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated, ClassVar

from msgspec import Meta

from eventgate import (
    Aggregate,
    App,
    Command,
    Event,
    ItemView,
    ListView,
    Projection,
    RecordedEvent,
    Resource,
    Row,
    RuleViolation,
)

Title = Annotated[str, Meta(min_length=1, max_length=80)]
Points = Annotated[int, Meta(ge=0, le=100)]


@dataclass(frozen=True)
class OpenBoard(Command):
    title: Title
    creates: ClassVar[bool] = True


@dataclass(frozen=True)
class RetitleBoard(Command):
    title: Title


@dataclass(frozen=True)
class ArchiveBoard(Command):
    pass


@dataclass(frozen=True)
class BoardOpened(Event):
    id: str
    title: str


@dataclass(frozen=True)
class BoardRetitled(Event):
    id: str
    title: str


@dataclass(frozen=True)
class BoardArchived(Event):
    id: str


class Board(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.archived = False

    def handle(self, command: Command) -> None:
        match command:
            case OpenBoard(title=title):
                self.record(BoardOpened(self.id, title))
            case RetitleBoard(title=title):
                if self.archived:
                    raise RuleViolation("an archived board keeps its title")
                self.record(BoardRetitled(self.id, title))
            case ArchiveBoard():
                if not self.archived:
                    self.record(BoardArchived(self.id))

    def apply(self, event: Event) -> None:
        if isinstance(event, BoardArchived):
            self.archived = True


@dataclass(frozen=True)
class AddTask(Command):
    board_id: str
    title: Title
    points: Points = 0
    creates: ClassVar[bool] = True


@dataclass(frozen=True)
class EstimateTask(Command):
    points: Points


@dataclass(frozen=True)
class CompleteTask(Command):
    pass


@dataclass(frozen=True)
class TaskAdded(Event):
    id: str
    board_id: str
    title: str
    points: int


@dataclass(frozen=True)
class TaskEstimated(Event):
    id: str
    points: int


@dataclass(frozen=True)
class TaskCompleted(Event):
    id: str


class Task(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.done = False

    def handle(self, command: Command) -> None:
        match command:
            case AddTask(board_id=board, title=title, points=points):
                self.record(TaskAdded(self.id, board, title, points))
            case EstimateTask(points=points):
                if self.done:
                    raise RuleViolation("a completed task keeps its estimate")
                self.record(TaskEstimated(self.id, points))
            case CompleteTask():
                if not self.done:
                    self.record(TaskCompleted(self.id))

    def apply(self, event: Event) -> None:
        if isinstance(event, TaskCompleted):
            self.done = True


boards = Projection("boards", {"id": str, "title": str, "archived": bool, "version": int})
tasks = Projection(
    "tasks",
    {"id": str, "board_id": str, "title": str, "points": int, "done": bool, "version": int},
)


def _supported(title: str) -> str:
    """A deliberate bug for the poison-event tests: titles starting with "!" break the boards
    read model until the "fix" is deployed (TASKBOARD_FIXED=1); "!!" breaks it even then."""
    if title.startswith("!") and (not os.environ.get("TASKBOARD_FIXED") or title[1:2] == "!"):
        raise ValueError(f"the boards read model cannot show the title {title!r}")
    return title


@boards.on(BoardOpened)
def _opened(row: Row | None, event: RecordedEvent) -> Row:
    title = _supported(event.data["title"])
    return {
        "id": event.stream_id,
        "title": title,
        "archived": False,
        "version": event.stream_version,
    }


@boards.on(BoardRetitled)
def _retitled(row: Row | None, event: RecordedEvent) -> Row | None:
    title = _supported(event.data["title"])
    return row and {**row, "title": title, "version": event.stream_version}


@boards.on(BoardArchived)
def _archived(row: Row | None, event: RecordedEvent) -> Row | None:
    return row and {**row, "archived": True, "version": event.stream_version}


@tasks.on(TaskAdded)
def _added(row: Row | None, event: RecordedEvent) -> Row:
    data = event.data
    return {
        "id": event.stream_id,
        "board_id": data["boardId"],
        "title": data["title"],
        "points": data["points"],
        "done": False,
        "version": 1,
    }


@tasks.on(TaskEstimated)
def _estimated(row: Row | None, event: RecordedEvent) -> Row | None:
    return row and {**row, "points": event.data["points"], "version": event.stream_version}


@tasks.on(TaskCompleted)
def _completed(row: Row | None, event: RecordedEvent) -> Row | None:
    return row and {**row, "done": True, "version": event.stream_version}


board_resource = Resource(
    "/api/boards",
    create=OpenBoard,
    put=RetitleBoard,
    delete=ArchiveBoard,
    list=ListView(
        boards, fields=["id", "title"], order=["title"], where={"archived": False}, search="title"
    ),
    item=ItemView(boards, fields=["id", "title", "version"], gone={"archived": True}),
)
task_resource = Resource(
    "/api/tasks",
    create=AddTask,
    post=[EstimateTask, CompleteTask],
    list=ListView(
        tasks,
        fields=["id", "title", "points", "done"],
        order=["title"],
        filters=["board_id", "done"],
    ),
    item=ItemView(tasks, fields=["id", "board_id", "title", "points", "done", "version"]),
)

app = App(
    "taskboard",
    commands={
        OpenBoard: Board,
        RetitleBoard: Board,
        ArchiveBoard: Board,
        AddTask: Task,
        EstimateTask: Task,
        CompleteTask: Task,
    },
    events=[BoardOpened, BoardRetitled, BoardArchived, TaskAdded, TaskEstimated, TaskCompleted],
    projections=[boards, tasks],
    resources=[board_resource, task_resource],
)
