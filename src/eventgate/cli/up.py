"""`eventgate up`: the gateway, command and query APIs, upsert service and functions."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from eventgate.app import App
from eventgate.bootstrap import function_worker, open_http
from eventgate.cli.common import (
    AppOption,
    CliError,
    DatabaseUrl,
    DataDir,
    app,
    chosen_app,
    chosen_reference,
    out,
    run,
    settings_for,
    setup_logging,
)
from eventgate.cli.functions import ChosenFunctions, FunctionModules, chosen_functions
from eventgate.config import DEFAULT_DATA_DIR, Settings
from eventgate.gateway.config import GatewayConfig, load_config

__all__ = ["up"]


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
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    functions: FunctionModules = None,
    no_functions: Annotated[
        bool,
        typer.Option(
            "--no-functions", help="Run no functions here (`eventgate serve functions` does)."
        ),
    ] = False,
) -> None:
    """Run the gateway, the command and query APIs, the upsert service and the functions.

    Serves `--app` (else the config's `app`, else the app last served on this data, else
    the inventory example). Functions:
    the app's own and any `--functions` module. Runs until SIGINT/SIGTERM."""
    setup_logging()
    record = chosen_reference(app_option, config, data)
    served = chosen_app(record)
    chosen = None if no_functions else chosen_functions(served, config, functions)
    settings = settings_for(data, url, config)
    run(lambda: _up(settings, served, record, load_config(config), host, port, insecure, chosen))


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: `up` drains and closes the stores itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _up(
    settings: Settings,
    served: App,
    reference: str,
    config: GatewayConfig,
    host: str,
    port: int,
    insecure: bool,
    functions: ChosenFunctions | None,
) -> None:
    if not config.auth_enabled and not _is_loopback(host) and not insecure:
        raise CliError(
            f"refusing to listen on {host} with no API keys: configure [[gateway.consumers]]"
            " or pass --insecure"
        )
    sock = _bind(host, port)
    http = await open_http(settings, config, served)
    settings.app_record.write_text(reference + "\n", encoding="utf-8")
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
    tasks = [asyncio.create_task(http.system.upsert.run(), name="upsert-service")]
    if functions is not None:
        worker = function_worker(http.system, functions.functions, functions.settings)
        tasks.append(asyncio.create_task(worker.run(), name="functions"))
    bound_host, bound_port = sock.getsockname()[:2]
    out.print(
        f"eventgate up: gateway on http://{bound_host}:{bound_port}"
        f" (app {served.name}, data in {settings.database_shown})"
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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
