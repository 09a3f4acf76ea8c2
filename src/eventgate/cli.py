"""The `eventgate` command line: run the system, inspect events, operate projections."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
import uvloop
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from eventgate.bootstrap import System, open_http, open_system
from eventgate.config import DEFAULT_DATA_DIR, Settings
from eventgate.errors import EventgateError
from eventgate.eventstore.model import RecordedEvent
from eventgate.gateway.config import GatewayConfig, load_config
from eventgate.inventory import inventory_app

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    help="eventgate: event-driven API services on one machine or many.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
projections_app = typer.Typer(help="Inspect and rebuild the read models.", no_args_is_help=True)
app.add_typer(projections_app, name="projections")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path,
    typer.Option("--data", help="Data directory (event store, read models, checkpoints)."),
]


class CliError(Exception):
    """A problem to report in one line on stderr, exiting non-zero."""


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return uvloop.run(main())
    except (EventgateError, CliError) as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None


async def _open_existing(data: Path) -> System:
    """Open the system on a data directory that must already hold an event store."""
    settings = Settings(data_dir=data)
    if not settings.event_store_path.is_file():
        raise CliError(f"no event store in {data} (start with `eventgate up --data {data}`)")
    return await open_system(settings, inventory_app())


# -- up ---------------------------------------------------------------------------------


@app.command()
def up(
    data: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Interface the gateway listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Gateway port (0: any free).")] = 8000,
    config: Annotated[
        Path | None, typer.Option(help="TOML config: consumers, limits, keys.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback host with no API keys configured.")
    ] = False,
) -> None:
    """Run the gateway, command and query APIs and the upsert service until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _run(lambda: _up(Settings(data_dir=data), load_config(config), host, port, insecure))


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: `up` drains and closes the stores itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _up(
    settings: Settings, config: GatewayConfig, host: str, port: int, insecure: bool
) -> None:
    if not config.auth_enabled and not _is_loopback(host) and not insecure:
        raise CliError(
            f"refusing to listen on {host} with no API keys: configure [[gateway.consumers]]"
            " or pass --insecure"
        )
    sock = _bind(host, port)
    http = await open_http(settings, config)
    server = _Server(
        uvicorn.Config(
            http.gateway,
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=10,
        )
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
    upsert = asyncio.create_task(http.system.upsert.run(), name="upsert-service")
    bound_host, bound_port = sock.getsockname()[:2]
    out.print(
        f"eventgate up: gateway on http://{bound_host}:{bound_port}"
        f" (data in {settings.data_dir.resolve()})"
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        upsert.cancel()
        await asyncio.gather(upsert, return_exceptions=True)
        await http.close()
        out.print("eventgate stopped cleanly")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


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
) -> None:
    """List stored events in global order."""
    found = _run(lambda: _events(data, stream, from_position, limit))
    if as_json:
        for event in found:
            sys.stdout.write(json.dumps(_event_json(event), ensure_ascii=False) + "\n")
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
    data: Path, stream: str | None, after: int, limit: int | None
) -> list[RecordedEvent]:
    system = await _open_existing(data)
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


def _event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "id": event.id,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "type": event.type,
        "schema_version": event.schema_version,
        "time": event.time.isoformat(),
        "data": event.data,
        "metadata": event.metadata,
    }


# -- projections ------------------------------------------------------------------------


@projections_app.command("status")
def projections_status(data: DataDir = DEFAULT_DATA_DIR) -> None:
    """Show each projection's checkpoint and lag behind the head of the log."""

    async def status() -> list[Any]:
        system = await _open_existing(data)
        try:
            return await system.upsert.status()
        finally:
            await system.close()

    table = Table("projection", "checkpoint", "head", "lag")
    for row in _run(status):
        table.add_row(row.name, str(row.checkpoint), str(row.head), str(row.lag))
    out.print(table)


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str | None, typer.Argument(help="One projection; all when left out.")] = None,
    data: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Empty read models and replay the whole log into them, with progress."""
    _run(lambda: _rebuild(data, name))


async def _rebuild(data: Path, name: str | None) -> None:
    system = await _open_existing(data)
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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
