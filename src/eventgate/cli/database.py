"""The PostgreSQL database: `eventgate migrate` (create or upgrade every store's schema) and
`eventgate copy` (a SQLite data directory's events into it, read models rebuilt)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eventgate.app import App
from eventgate.bootstrap import open_system
from eventgate.cli.common import (
    AppOption,
    CliError,
    DatabaseUrl,
    DataDir,
    app,
    chosen_app,
    err,
    fail,
    out,
    run,
    settings_for,
)
from eventgate.commands.idempotency import PostgresIdempotencyStore
from eventgate.config import DEFAULT_DATA_DIR, Settings, redact
from eventgate.eventstore.postgres import PostgresEventStore
from eventgate.eventstore.sqlite import SQLiteEventStore
from eventgate.http.etags import KEY_BYTES
from eventgate.pgschema import schema_versions, shared_key
from eventgate.processes.registry import PostgresProcessRegistry

__all__ = ["copy", "migrate"]

PAGE = 2000


@app.command()
def migrate(
    data: DataDir = DEFAULT_DATA_DIR,
    url: DatabaseUrl = None,
    app_option: AppOption = None,
) -> None:
    """Create or upgrade the schema of every store (events, read models, idempotency keys,
    function state, process registry, shared keys) in the PostgreSQL database, and show
    each component's version. Also done on start; running it again changes nothing."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url)
    target = settings.database_url
    if target is None:
        fail(CliError("migrate needs --database-url (SQLite files are set up on start)"))
    versions = run(lambda: _migrate(settings, target, served))
    table = Table("component", "schema version")
    for component, version in versions.items():
        table.add_row(component, str(version))
    out.print(table)
    out.print(f"{redact(target)} is up to date")


async def _migrate(settings: Settings, url: str, served: App) -> dict[str, int]:
    system = await open_system(settings, served)  # each store ensures its schema on open
    try:
        idempotency = await PostgresIdempotencyStore.open(url)
        await idempotency.close()
        registry = await PostgresProcessRegistry.open(url)
        await registry.close()
        await shared_key(url, "etag", KEY_BYTES)
        connection = await asyncpg.connect(url)
        try:
            return await schema_versions(connection)
        finally:
            await connection.close()
    finally:
        await system.close()


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
