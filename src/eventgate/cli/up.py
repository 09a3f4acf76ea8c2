"""`eventgate up`: the gateway, command and query APIs, upsert service and functions."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from eventgate.app import App
from eventgate.bootstrap import function_worker, open_broker_of, open_http, open_registry
from eventgate.broker.feed import JetStreamFeed
from eventgate.broker.relay import Relay
from eventgate.cli.common import (
    AppOption,
    BrokerUrl,
    DatabaseUrl,
    DataDir,
    LogFormat,
    app,
    checked,
    chosen_app,
    chosen_reference,
    out,
    run,
    settings_for,
    setup_logging,
)
from eventgate.cli.functions import ChosenFunctions, FunctionModules, chosen_functions
from eventgate.cli.serving import address, bind, check_exposure, serve_http
from eventgate.config import DEFAULT_DATA_DIR, Settings, redact
from eventgate.gateway.config import GatewayConfig, load_config
from eventgate.health.logs import AccessLog, logs_json
from eventgate.health.probes import WithProbes
from eventgate.health.readiness import Readiness, broker_check, system_checks
from eventgate.processes.lease import while_leased
from eventgate.processes.membership import Membership
from eventgate.tracing.http import Traced

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
    broker: BrokerUrl = None,
    functions: FunctionModules = None,
    no_functions: Annotated[
        bool,
        typer.Option(
            "--no-functions", help="Run no functions here (`eventgate serve functions` does)."
        ),
    ] = False,
    no_projections: Annotated[
        bool,
        typer.Option(
            "--no-projections",
            help="Run no projections here (`eventgate serve projections` does).",
        ),
    ] = False,
    log_format: LogFormat = None,
) -> None:
    """Run the gateway, the command and query APIs, the upsert service and the functions.

    Serves `--app` (else the config's `app`, else the app last served on this data, else
    the inventory example). Functions:
    the app's own and any `--functions` module. With --broker, a relay publishes the events
    to NATS JetStream and the projections and functions consume them from there. Runs until
    SIGINT/SIGTERM."""
    setup_logging(log_format)
    record = chosen_reference(app_option, config, data)
    served = chosen_app(record)
    chosen = None if no_functions else chosen_functions(served, config, functions)
    settings = settings_for(data, url, config, broker)
    gateway_config = checked(load_config, config)
    roles = ["gateway", "commands", "queries"]
    roles += [] if settings.broker_url is None else ["relay"]
    roles += [] if no_projections else ["projections"]
    roles += [] if chosen is None else ["functions"]

    async def main() -> None:
        exposed = gateway_config.auth_enabled
        check_exposure(host, exposed, insecure, "no API keys ([[gateway.consumers]])")
        await _up(settings, served, record, gateway_config, bind(host, port), roles, chosen)

    run(main, "up")


async def _up(
    settings: Settings,
    served: App,
    reference: str,
    config: GatewayConfig,
    sock: socket.socket,
    roles: list[str],
    functions: ChosenFunctions | None,
) -> None:
    registry = await open_registry(settings)
    membership = Membership(registry, roles, address(sock))
    try:
        http = await open_http(settings, config, served, membership)
    except BaseException:
        await registry.close()
        raise
    settings.app_record.write_text(reference + "\n", encoding="utf-8")
    tasks = [membership.run(), http.watcher.run()]
    broker = None
    if settings.broker_url is not None:
        try:
            broker = await open_broker_of(http.system, f"eventgate up {membership.id}")
        except BaseException:
            await http.close()
            await registry.close()
            raise
        relay = Relay(http.system.store, broker)
        http.sampler.relay(relay.checkpoint)
        tasks.append(while_leased(membership, "relay", "relay", relay.run))
        http.system.upsert.read_from(JetStreamFeed(broker, http.system.store))
    if "projections" in roles:
        tasks.append(http.system.upsert.run())
        http.sampler.projections(http.system.read_store, lambda: http.system.upsert.held)
    if functions is not None:
        worker = function_worker(
            http.system, functions.functions, functions.settings, broker, worker_id=membership.id
        )
        tasks.append(worker.run())
        names = frozenset(f.name for f in functions.functions)
        http.sampler.functions(http.system.functions, names, broker)
    readiness = Readiness()
    system_checks(readiness, http.system, projections=True, functions=functions is not None)
    if broker is not None:
        readiness.add("broker", broker_check(broker))
    elsewhere = [r for r in ("projections", "functions") if r not in roles]
    out.print(
        f"eventgate up: gateway on {address(sock)}"
        f" (app {served.name}, data in {settings.database_shown})"
        + (f"; {' and '.join(elsewhere)} run elsewhere" if elsewhere else "")
        + (f"; events relayed to {redact(broker.url)}" if broker else "")
    )
    try:
        front = WithProbes(Traced(AccessLog(http.gateway, access=logs_json())), readiness)
        await serve_http(front, sock, tasks)
    finally:
        if broker is not None:
            await broker.close()
        await http.close()
        await registry.close()
    out.print("eventgate stopped cleanly")
