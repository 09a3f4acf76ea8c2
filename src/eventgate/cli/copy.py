"""`eventgate copy`: move a SQLite data directory's events to PostgreSQL, then rebuild there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from eventgate.app import App
from eventgate.bootstrap import open_system
from eventgate.cli.common import (
    AppOption,
    CliError,
    app,
    chosen_app,
    err,
    fail,
    out,
    run,
    settings_for,
)
from eventgate.config import Settings, redact
from eventgate.eventstore.postgres import PostgresEventStore
from eventgate.eventstore.sqlite import SQLiteEventStore

__all__ = ["copy"]

PAGE = 2000


@app.command()
def copy(
    source: Annotated[Path, typer.Option("--from", help="The SQLite data directory to copy.")],
    target: Annotated[str, typer.Option("--to", help="The PostgreSQL URL to copy into.")],
    app_option: AppOption = None,
) -> None:
    """Copy every event (ids, positions, versions, times, metadata as stored) into PostgreSQL
    and rebuild the app's read models there. Safe to run again: events already there are
    skipped. Run it while nothing appends to either side."""
    served = chosen_app(app_option, data=source)
    settings = settings_for(source, target)
    if not settings.event_store_path.is_file():
        fail(CliError(f"no event store in {source}"))
    run(lambda: _copy(settings, target, served))


async def _copy(settings: Settings, url: str, served: App) -> None:
    source = await SQLiteEventStore.open(settings.event_store_path)  # no upcasters: as stored
    try:
        target = await PostgresEventStore.open(url)
    except BaseException:
        await source.close()
        raise
    try:
        head = await source.head()
        copied = await _events(source, target, head)
    finally:
        await target.close()
        await source.close()
    out.print(f"copied {copied} new event(s) of {head} to {redact(url)}")
    system = await open_system(settings, served)
    try:
        with _progress() as progress:
            for projection in system.upsert.projections:
                task = progress.add_task(f"rebuild {projection.name}", total=head or 1)

                def advance(position: int, task: TaskID = task) -> None:
                    progress.update(task, completed=position)

                await system.upsert.rebuild(projection, advance)
                progress.update(task, completed=head or 1)
    finally:
        await system.close()
    out.print("read models rebuilt")


async def _events(source: SQLiteEventStore, target: PostgresEventStore, head: int) -> int:
    copied, after = 0, 0
    with _progress() as progress:
        task = progress.add_task("copy events", total=head or 1)
        while page := await source.read_all(after, PAGE):
            copied += await target.import_events(page)
            after = page[-1].position
            progress.update(task, completed=after)
    if copied == 0 and head and after < head:
        raise CliError("nothing was copied")
    return copied


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())  # fmt: skip
    return Progress(*columns, console=err)
