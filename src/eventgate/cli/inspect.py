"""Look inside a data directory: the events, the projections' state; rebuild projections."""

from __future__ import annotations

import json
import sys
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
from rich.table import Table

from eventgate.app import App
from eventgate.cli.common import (
    AppOption,
    CliError,
    DatabaseUrl,
    DataDir,
    app,
    chosen_app,
    err,
    fail,
    open_existing,
    out,
    run,
    settings_for,
)
from eventgate.config import DEFAULT_DATA_DIR, Settings
from eventgate.eventstore.model import RecordedEvent
from eventgate.projections.parking import RETRY, SKIP
from eventgate.projections.service import ProjectionStatus

__all__ = [
    "events",
    "projections_rebuild",
    "projections_retry",
    "projections_skip",
    "projections_status",
]

projections_app = typer.Typer(help="Inspect and rebuild the read models.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")


# -- events -----------------------------------------------------------------------------


@app.command()
def events(
    data: DataDir = DEFAULT_DATA_DIR,
    stream: Annotated[str | None, typer.Option(help="Only this stream.")] = None,
    from_position: Annotated[
        int, typer.Option("--from", min=0, help="Only events after this position.")
    ] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
) -> None:
    """List stored events in global order (upcast by the app's upcasters)."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url)
    found = run(lambda: _events(settings, served, stream, from_position, limit))
    if as_json:
        for event in found:
            sys.stdout.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        return
    table = Table("position", "stream", "version", "type", "time", "data")
    for event in found:
        table.add_row(
            str(event.position),
            event.stream_id,
            str(event.stream_version),
            f"{event.type} v{event.schema_version}",
            event.time.isoformat(timespec="seconds"),
            json.dumps(event.data, ensure_ascii=False),
        )
    out.print(table)
    out.print(f"{len(found)} event(s)")


async def _events(
    settings: Settings, served: App, stream: str | None, after: int, limit: int | None
) -> list[RecordedEvent]:
    system = await open_existing(settings, served)
    try:
        if stream is not None:
            found = [e for e in await system.store.read_stream(stream) if e.position > after]
            return found[:limit]
        found = []
        while limit is None or len(found) < limit:
            page = await system.store.read_all(after, 1000)
            if not page:
                break
            found.extend(page)
            after = page[-1].position
        return found[:limit]
    finally:
        await system.close()


# -- projections ------------------------------------------------------------------------


@projections_app.command("status")
def projections_status(
    data: DataDir = DEFAULT_DATA_DIR,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of tables.")] = False,
) -> None:
    """Each projection's checkpoint and lag behind the head of the log, and every stream it
    has parked (the event it could not apply, and why)."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url)

    async def status() -> list[ProjectionStatus]:
        system = await open_existing(settings, served)
        try:
            return await system.upsert.status()
        finally:
            await system.close()

    found = run(status)
    if as_json:
        sys.stdout.write(json.dumps({"projections": [s.to_json() for s in found]}) + "\n")
        return
    table = Table("projection", "checkpoint", "head", "lag", "parked streams")
    for row in found:
        table.add_row(row.name, str(row.checkpoint), str(row.head), str(row.lag),
                      str(len(row.parked)))  # fmt: skip
    out.print(table)
    parked = [stream for row in found for stream in row.parked]
    if not parked:
        return
    details = Table("projection", "stream", "position", "event", "waiting", "error", "request")
    for stream in parked:
        details.add_row(stream.projection, stream.stream_id, str(stream.position),
                        stream.event_type, str(stream.events), stream.error[:100],
                        stream.request or "")  # fmt: skip
    out.print(details)
    out.print(
        "after a fix: `eventgate projections retry NAME --stream ID` (or --all);"
        " to drop the failing event: `eventgate projections skip NAME --stream ID`"
    )


ProjectionName = Annotated[str, typer.Argument(help="The projection (see `projections status`).")]
StreamOption = Annotated[str | None, typer.Option("--stream", help="One parked stream.")]


@projections_app.command("retry")
def projections_retry(
    name: ProjectionName,
    stream: StreamOption = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Every parked stream.")] = False,
    data: DataDir = DEFAULT_DATA_DIR,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
) -> None:
    """Apply a parked stream's events again, in order (after a fix); a running `eventgate up`
    does it within a second."""
    if (stream is None) == (not retry_all):
        err.print("[bold red]error:[/] give --stream ID or --all (not both)")
        raise typer.Exit(2)
    _request(settings_for(data, url), app_option, name, stream, RETRY)


@projections_app.command("skip")
def projections_skip(
    name: ProjectionName,
    stream: Annotated[str, typer.Option("--stream", help="The parked stream.")],
    data: DataDir = DEFAULT_DATA_DIR,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
) -> None:
    """Drop the first parked event of a stream (the one that fails) and apply the rest."""
    _request(settings_for(data, url), app_option, name, stream, SKIP)


def _request(
    settings: Settings, app_option: str | None, name: str, stream: str | None, kind: str
) -> None:
    served = chosen_app(app_option, data=settings.data_dir)

    async def ask() -> int:
        system = await open_existing(settings, served)
        try:
            return await system.read_store.request(name, stream, kind)
        finally:
            await system.close()

    count = run(ask)
    if count == 0:
        fail(CliError(f"{name} has no parked stream{' ' + stream if stream else 's'}"))
    out.print(f"{count} parked stream(s) of {name} queued for {kind}; a running"
              " `eventgate up` takes them within a second")  # fmt: skip


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="One projection; all when left out.")] = None,
    data: DataDir = DEFAULT_DATA_DIR,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
) -> None:
    """Empty read models and replay the whole log into them, with progress."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url)
    run(lambda: _rebuild(settings, served, name))


async def _rebuild(settings: Settings, served: App, name: str | None) -> None:
    system = await open_existing(settings, served)
    try:
        chosen = (
            [system.read_store.projection(name)]
            if name is not None
            else list(system.upsert.projections)
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err) as progress:
            for projection in chosen:
                head = await system.store.head()
                task = progress.add_task(projection.name, total=head or 1)

                def advance(position: int, task: TaskID = task) -> None:
                    progress.update(task, completed=position)

                await system.upsert.rebuild(projection, advance)
                progress.update(task, completed=head or 1)
        out.print(f"rebuilt {', '.join(p.name for p in chosen)}")
    finally:
        await system.close()
