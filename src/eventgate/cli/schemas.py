"""`eventgate schemas`: release the app's event schemas, check the code against the release
(for CI: exit 0 compatible, 1 breaking, 2 usage), print the AsyncAPI document."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import orjson
import typer
from rich.markup import escape

from eventgate.app import App, load_app
from eventgate.cli.common import AppOption, BrokerUrl, DataDir, app, err, out
from eventgate.config import DEFAULT_DATA_DIR, app_reference, broker_url
from eventgate.errors import EventgateError
from eventgate.gateway.config import load_config
from eventgate.schemas.asyncapi import asyncapi_document
from eventgate.schemas.compatibility import breaking_changes
from eventgate.schemas.generate import Schemas, current_schemas
from eventgate.schemas.released import Released, default_location, read_released, write_released

__all__ = ["schemas_app"]

T = TypeVar("T")

schemas_app = typer.Typer(
    help="Event schemas: release them, check the code against the release, AsyncAPI.",
    no_args_is_help=True,
)
app.add_typer(schemas_app, name="schemas")

File = Annotated[
    Path | None,
    typer.Option(
        "--file",
        help="The released schemas file (default: the app's event_schemas, else"
        " event-schemas.json in the app's package).",
        show_default=False,
    ),
]
Config = Annotated[Path | None, typer.Option(help="TOML config (API keys: secured servers).")]


@schemas_app.command("release")
def release(
    app_option: AppOption = None,
    file: File = None,
    force: Annotated[
        bool, typer.Option("--force", help="Release even a change that breaks readers.")
    ] = False,
    data: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Write the app's current event schemas to its released file (commit it), keeping the
    older versions the file holds. Refuses a change that breaks readers unless --force."""
    served, path = _app_and_file(app_option, file, data)
    current = current_schemas(served.events)
    before = _read(path, served) if path.is_file() else Released(served.name, {})
    problems = _problems(before, current, served)
    if problems and not force:
        _breaking(problems, path)
    events = {
        name: {**before.events.get(name, {}), **versions} for name, versions in current.items()
    }
    changed = sorted(n for n in events if events[n] != before.events.get(n))
    removed = sorted(set(before.events) - set(events))
    _guard(lambda: write_released(path, Released(served.name, events)))
    summary = ", ".join(changed + [f"{n} (removed)" for n in removed]) or "nothing changed"
    out.print(f"released {len(events)} event types of {served.name} to {path}: {summary}",
              highlight=False)  # fmt: skip


@schemas_app.command("check")
def check(
    app_option: AppOption = None, file: File = None, data: DataDir = DEFAULT_DATA_DIR
) -> None:
    """Compare the code's event schemas with the released ones: exit 0 when compatible, 1
    with one line per change that breaks readers (and no upcaster covers), 2 when the app or
    its released file cannot be read."""
    served, path = _app_and_file(app_option, file, data)
    released = _read(path, served)
    current = current_schemas(served.events)
    problems = _problems(released, current, served)
    if problems:
        _breaking(problems, path)
    unreleased = sorted(
        f"{name} v{version}"
        for name, versions in current.items()
        for version, schema in versions.items()
        if released.events.get(name, {}).get(version) != schema
    )
    note = f"; not released yet: {', '.join(unreleased)}" if unreleased else ""
    out.print(f"event schemas of {served.name} are compatible with {path}{note}", highlight=False)


@schemas_app.command("asyncapi")
def asyncapi(
    app_option: AppOption = None,
    broker: BrokerUrl = None,
    config: Config = None,
    data: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print the app's AsyncAPI 3.0 document (as the gateway serves at /asyncapi.json)."""
    served = _load(app_option, data, config)
    gateway_config = _guard(lambda: load_config(config))
    url = _guard(lambda: broker_url(broker, config))
    document = asyncapi_document(served, broker_url=url, secured=gateway_config.auth_enabled)
    typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _problems(released: Released, current: Schemas, served: App) -> list[str]:
    return breaking_changes(released.events, current, served.upcasters.has_step)


def _breaking(problems: list[str], path: Path) -> NoReturn:
    for problem in problems:
        err.print(f"breaking: {escape(problem)}", highlight=False)
    err.print(f"{len(problems)} change(s) break readers of {path}; bump the schema_version"
              " and register an upcaster (docs/schemas.md)", highlight=False)  # fmt: skip
    raise typer.Exit(1)


def _app_and_file(option: str | None, file: Path | None, data: Path) -> tuple[App, Path]:
    served = _load(option, data)
    if file is not None:
        return served, file
    if served.event_schemas is not None:
        return served, served.event_schemas
    return served, _guard(lambda: default_location(app_reference(option, None, data)))


def _load(option: str | None, data: Path, config: Path | None = None) -> App:
    return _guard(lambda: load_app(app_reference(option, config, data)))


def _read(path: Path, served: App) -> Released:
    released = _guard(lambda: read_released(path))
    if released.app != served.name:
        _usage(f"{path} holds the schemas of app {released.app}, not {served.name}")
    return released


def _guard(function: Callable[[], T]) -> T:
    try:
        return function()
    except EventgateError as e:
        _usage(str(e))


def _usage(message: str) -> NoReturn:
    """A usage problem (no app, no released file): one line, exit code 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)
