"""Functions on the command line: list them, run workers, operate the dead-letter store."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from eventgate.app import App
from eventgate.bootstrap import (
    function_worker,
    open_broker_of,
    open_function_store,
    open_registry,
    open_system,
)
from eventgate.broker.lag import broker_lag
from eventgate.cli.admin_port import AdminPort, one_process, worker_admin
from eventgate.cli.common import (
    AppOption,
    BrokerUrl,
    CliError,
    DatabaseUrl,
    DataDir,
    LogFormat,
    app,
    checked,
    chosen_app,
    err,
    fail,
    open_existing,
    out,
    run,
    serve_app,
    settings_for,
    setup_logging,
)
from eventgate.cli.serving import run_until_stopped, supervise, worker_argv, worker_env
from eventgate.config import DEFAULT_DATA_DIR, Settings
from eventgate.errors import EventgateError
from eventgate.functions.admin import function_rows
from eventgate.functions.api import Function
from eventgate.functions.config import load_functions_config
from eventgate.functions.loader import load_functions
from eventgate.functions.state import DeadLetterRecord
from eventgate.processes.membership import Membership
from eventgate.webhooks.model import PREFIX
from eventgate.webhooks.purge import FunctionPurge, Purged

__all__ = ["ChosenFunctions", "FunctionModules", "chosen_functions"]

functions_app = typer.Typer(help="Inspect the functions.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect, replay and discard dead letters.", no_args_is_help=True)
app.add_typer(functions_app, name="functions")
app.add_typer(dlq_app, name="dlq")

FunctionModules = Annotated[
    list[str] | None,
    typer.Option("--functions", help="Module with @function definitions (repeatable)."),
]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML config file.")]
FunctionFilter = Annotated[str | None, typer.Option("--function", help="Only this function.")]

WORKER_POLL_INTERVAL = 0.02
"""How often a worker process looks for events appended by other processes (seconds)."""


@dataclass(frozen=True)
class ChosenFunctions:
    functions: list[Function]
    settings: Mapping[str, Any]


def chosen_functions(
    served: App, config: Path | None, modules: list[str] | None
) -> ChosenFunctions:
    """The app's own functions (unless the config turns them off), the config's modules
    and the `--functions` modules, loaded; errors end the program in one line."""
    try:
        configured = load_functions_config(config)
        own = list(served.functions) if configured.app_functions else []
        extra = configured.modules + tuple(modules or ())
        loaded = [*own, *(load_functions(extra) if extra else [])]
    except EventgateError as e:
        fail(e)
    names = [f.name for f in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        fail(CliError(f"two functions are named {twice[0]!r}"))
    return ChosenFunctions(loaded, configured.settings)


# -- functions list ---------------------------------------------------------------------


@functions_app.command("list")
def functions_list(
    data: DataDir = DEFAULT_DATA_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
) -> None:
    """Every function that has run here: triggers, checkpoint, lag, failures, dead letters;
    with --broker, also the messages its JetStream consumers have not acked (broker lag)."""
    served = chosen_app(app_option, data=data)
    settings = settings_for(data, url, None, broker)

    async def rows() -> list[dict[str, Any]]:
        system = await open_existing(settings, served)
        try:
            found = await function_rows(system.functions, system.store)
            if settings.broker_url is not None:
                lag = await broker_lag(system, [row["name"] for row in found])
                for row in found:  # the store's checkpoints do not move: the broker delivers
                    row["broker_lag"] = lag["functions"][row["name"]]
                    if row["broker_lag"] is not None:
                        row["checkpoint"] = row["lag"] = None
            return found
        finally:
            await system.close()

    found = run(rows)
    if as_json:
        sys.stdout.write(json.dumps({"functions": found}) + "\n")
        return
    table = Table("function", "triggers", "checkpoint", "lag", "invocations", "failures", "dead")
    if settings.broker_url is not None:
        table.add_column("broker lag")
    for row in found:
        table.add_row(
            row["name"],
            ", ".join(row["triggers"]),
            *(_shown(row[k]) for k in ("checkpoint", "lag", "invocations", "failures")),
            str(row["dead_letters"]),
            *([_shown(row["broker_lag"])] if "broker_lag" in row else []),
        )
    out.print(table)


def _shown(lag: int | None) -> str:
    return "-" if lag is None else str(lag)


# -- functions purge --------------------------------------------------------------------


@functions_app.command("purge")
def functions_purge(
    name: Annotated[str, typer.Argument(help="The function, as `functions list` names it.")],
    data: DataDir = DEFAULT_DATA_DIR,
    functions: FunctionModules = None,
    config: ConfigFile = None,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
) -> None:
    """Delete all that is kept of a function removed from the code (renamed or deleted):
    checkpoints, counts, effect records and dead letters; with --broker, its JetStream
    consumers too. A function still declared (the app, --config, --functions, as `serve
    functions` is given them) or a webhook whose subscription exists is refused."""
    served = chosen_app(app_option, config, data)
    if name in {f.name for f in chosen_functions(served, config, functions).functions}:
        fail(CliError(f"function {name!r} is still declared; remove it from the code first"))
    settings = settings_for(data, url, config, broker)
    purged = run(lambda: _purge(settings, served, name))
    out.print(f"function {name} purged: {purged.rows} stored row(s),"
              f" {purged.consumers} JetStream consumer(s)")  # fmt: skip


async def _purge(settings: Settings, served: App, name: str) -> Purged:
    system = await open_existing(settings, served)
    broker = None
    try:
        subscription = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and await system.webhooks.get(subscription) is not None:
            raise CliError(f"webhook {subscription} still exists; DELETE /admin/webhooks/"
                           f"{subscription} deletes it and purges its function")  # fmt: skip
        if settings.broker_url is not None:
            broker = await open_broker_of(system, "eventgate functions purge")
        purged = await FunctionPurge(system.functions, broker)(name)
    finally:
        if broker is not None:
            await broker.close()
        await system.close()
    if not purged:
        raise CliError(f"nothing is kept of a function {name!r} here")
    return purged


# -- dlq --------------------------------------------------------------------------------


async def _with_store(settings: Settings, action: Any) -> Any:
    path = settings.functions_path
    if settings.database_url is None and not path.is_file():
        raise CliError(f"no functions have run in {settings.data_dir} (no {path.name})")
    store = await open_function_store(settings)
    try:
        return await action(store)
    finally:
        await store.close()


@dlq_app.command("list")
def dlq_list(
    data: DataDir = DEFAULT_DATA_DIR,
    function: FunctionFilter = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    url: DatabaseUrl = None,
) -> None:
    """The dead letters, oldest first."""
    settings = settings_for(data, url)
    letters: list[DeadLetterRecord] = run(
        lambda: _with_store(settings, lambda store: store.dead_letters(function))
    )
    if as_json:
        for letter in letters:
            sys.stdout.write(json.dumps(letter.to_json(), ensure_ascii=False) + "\n")
        return
    table = Table(
        "id", "function", "event", "stream", "attempts", "error", "last failure", "status"
    )
    for letter in letters:
        table.add_row(
            str(letter.id),
            letter.function,
            f"{letter.event.type} @{letter.event.position}",
            letter.event.stream_id,
            str(letter.attempts),
            f"{letter.error_type}: {letter.error_message}"[:80],
            letter.last_failure.isoformat(timespec="seconds"),
            letter.status,
        )
    out.print(table)
    out.print(f"{len(letters)} dead letter(s)")


LetterId = Annotated[int, typer.Argument(min=1, help="Dead letter id (from `dlq list`).")]


@dlq_app.command("show")
def dlq_show(
    letter_id: LetterId, data: DataDir = DEFAULT_DATA_DIR, url: DatabaseUrl = None
) -> None:
    """One dead letter in full, as JSON: the event, the error, attempts, failure times."""
    settings = settings_for(data, url)
    letter = run(lambda: _with_store(settings, lambda store: store.dead_letter_by_id(letter_id)))
    sys.stdout.write(json.dumps(letter.to_json(), indent=2, ensure_ascii=False) + "\n")


@dlq_app.command("replay")
def dlq_replay(
    letter_id: Annotated[int | None, typer.Argument(min=1, help="Dead letter id.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
    function: FunctionFilter = None,
    data: DataDir = DEFAULT_DATA_DIR,
    url: DatabaseUrl = None,
) -> None:
    """Hand dead letters back to their functions; running workers pick them up within 1 s."""
    if (letter_id is None) == (not replay_all):
        err.print("[bold red]error:[/] give a dead letter id or --all (not both)")
        raise typer.Exit(2)
    settings = settings_for(data, url)
    count = run(
        lambda: _with_store(
            settings, lambda store: store.request_replay(letter_id=letter_id, function=function)
        )
    )
    out.print(f"{count} dead letter(s) queued for replay")


@dlq_app.command("discard")
def dlq_discard(
    letter_id: LetterId, data: DataDir = DEFAULT_DATA_DIR, url: DatabaseUrl = None
) -> None:
    """Delete a dead letter for good."""
    settings = settings_for(data, url)
    run(lambda: _with_store(settings, lambda store: store.discard(letter_id)))
    out.print(f"dead letter {letter_id} discarded")


# -- serve functions --------------------------------------------------------------------


@serve_app.command("functions")
def serve_functions(
    data: DataDir = DEFAULT_DATA_DIR,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    functions: FunctionModules = None,
    config: ConfigFile = None,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
    log_format: LogFormat = None,
    admin_port: AdminPort = None,
) -> None:
    """Run the functions in N worker processes that share the streams (beside an
    `eventgate up --no-functions`); a worker that dies is restarted, and its streams are
    taken over by the others meanwhile. With --broker they consume from NATS JetStream
    (fed by `eventgate serve relay`) and share the partitions through it."""
    setup_logging(log_format)
    checked(one_process, admin_port, workers)
    served = chosen_app(app_option, config, data)
    chosen = chosen_functions(served, config, functions)
    settings = settings_for(data, url, config, broker, poll_interval=WORKER_POLL_INTERVAL)
    if workers == 1:
        run(lambda: _serve_one(settings, served, chosen, admin_port), "functions")
        return
    modules = [arg for module in functions or [] for arg in ("--functions", module)]
    argv = worker_argv("functions", data, app_option, config, modules)
    run(lambda: supervise(argv, workers, "functions", None, worker_env(url, broker)))


async def _serve_one(
    settings: Settings,
    served: App,
    chosen: ChosenFunctions,
    admin_port: int | None,
) -> None:
    registry = await open_registry(settings)
    system = await open_system(settings, served)
    broker = None
    try:
        membership = Membership(registry, ["functions"])
        if settings.broker_url is not None:
            broker = await open_broker_of(system, f"eventgate functions {membership.id}")
        worker = function_worker(
            system, chosen.functions, chosen.settings, broker, worker_id=membership.id
        )
        sampler, admin = worker_admin(admin_port, membership, system, broker, functions=True)
        sampler.functions(system.functions, frozenset(f.name for f in chosen.functions), broker)
        names = ", ".join(f.name for f in chosen.functions)
        source = f"stream {broker.layout.stream}" if broker else "the store"
        out.print(f"eventgate functions worker {worker.id}: running {names} from {source}")
        await run_until_stopped(worker.run, [membership.run(), *admin])
    finally:
        if broker is not None:
            await broker.close()
        await system.close()
        await registry.close()
    out.print(f"eventgate functions worker {worker.id} stopped cleanly")
