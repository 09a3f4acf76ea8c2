"""What every `eventgate` command shares: the Typer app, consoles, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvloop
from rich.console import Console
from rich.markup import escape

from eventgate.app import App, load_app
from eventgate.bootstrap import System, open_system
from eventgate.config import Settings, app_reference, broker_url, database_url
from eventgate.errors import EventgateError
from eventgate.health.logs import LOG_FORMAT_ENV, log_format
from eventgate.health.logs import setup_logging as configure_logging
from eventgate.tracing import setup as tracing

__all__ = [
    "AppOption",
    "BrokerUrl",
    "CliError",
    "DataDir",
    "DatabaseUrl",
    "LogFormat",
    "app",
    "checked",
    "chosen_app",
    "chosen_reference",
    "err",
    "fail",
    "open_existing",
    "out",
    "run",
    "serve_app",
    "settings_for",
    "setup_logging",
]

T = TypeVar("T")

app = typer.Typer(
    help="eventgate: event-driven API services on one machine or many.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

serve_app = typer.Typer(help="Run one part of eventgate on its own.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataDir = Annotated[
    Path,
    typer.Option("--data", help="Data directory (event store, read models, checkpoints)."),
]

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        envvar="EVENTGATE_APP",
        help="The app, as module:attribute (default: the one `up` last served on --data,"
        " else the inventory example).",
    ),
]


class CliError(Exception):
    """A problem to report in one line on stderr, exiting non-zero."""


def run(main: Callable[[], Coroutine[Any, Any, T]], role: str | None = None) -> T:
    """Run `main` on uvloop; eventgate's own errors become one line and exit code 1. A
    serving process names its `role`: it is traced when the environment configures
    OpenTelemetry (tracing/setup.py), and its last spans are sent before it exits."""
    try:
        if role is not None:
            tracing.configure(role)
        return uvloop.run(main())
    except (EventgateError, CliError) as e:
        fail(e)
    finally:
        if role is not None:
            tracing.shutdown()


def checked(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)`; eventgate's own errors become one line and exit code 1."""
    try:
        return function(*args)
    except (EventgateError, CliError) as e:
        fail(e)


def fail(error: Exception) -> NoReturn:
    """Report `error` in one line on stderr and exit with code 1."""
    err.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
    raise typer.Exit(1) from None


def setup_logging(chosen: str | None = None) -> None:
    """Logging in the format `--log-format` chose (else EVENTGATE_LOG_FORMAT, else text),
    kept in the environment so a supervisor's workers log alike; or one line and exit 1."""
    try:
        form = log_format(chosen)
    except EventgateError as e:
        fail(e)
    os.environ[LOG_FORMAT_ENV] = form
    configure_logging(form)


LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar=LOG_FORMAT_ENV,
        help="Logs as text or json (one object a line, with request and correlation ids).",
        show_default=False,
    ),
]


def chosen_reference(
    option: str | None, config: Path | None = None, data: Path | None = None
) -> str:
    """The `module:attr` that `--app`, the config file, the data directory's record or the
    default names; or one line and exit 1."""
    try:
        return app_reference(option, config, data)
    except EventgateError as e:
        fail(e)


def chosen_app(option: str | None, config: Path | None = None, data: Path | None = None) -> App:
    """The app `chosen_reference` names, loaded; or one line and exit 1."""
    reference = chosen_reference(option, config, data)
    try:
        return load_app(reference)
    except EventgateError as e:
        fail(e)


BrokerUrl = Annotated[
    str | None,
    typer.Option(
        "--broker",
        envvar="EVENTGATE_BROKER_URL",
        help="NATS JetStream (nats://host:4222) that carries the events to their consumers.",
        show_default=False,
    ),
]

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="EVENTGATE_DATABASE_URL",
        help="PostgreSQL (postgresql://user@host/db) for events, read models and idempotency"
        " keys, instead of SQLite files in --data.",
        show_default=False,
    ),
]


def settings_for(
    data: Path,
    url: str | None,
    config: Path | None = None,
    broker: str | None = None,
    **options: Any,
) -> Settings:
    """Settings from the options (`--database-url`, `--broker`, else the config's
    `database_url`, `broker_url`), or one line and exit 1."""
    try:
        return Settings(data_dir=data, database_url=database_url(url, config),
                        broker_url=broker_url(broker, config), **options)  # fmt: skip
    except EventgateError as e:
        fail(e)


async def open_existing(settings: Settings, app: App) -> System:
    """Open the system of `app` on data that must already hold an event store."""
    if settings.database_url is None and not settings.event_store_path.is_file():
        data = settings.data_dir
        raise CliError(f"no event store in {data} (start with `eventgate up --data {data}`)")
    return await open_system(settings, app)
