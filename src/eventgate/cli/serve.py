"""`eventgate serve gateway|commands|queries|projections`: each component as its own process.

Every process points at the same database (`--database-url`, or one data directory on one
machine), registers in the process registry (`eventgate status` lists it) and stops
cleanly on SIGINT/SIGTERM. `--workers N` keeps N copies running under one supervisor;
the HTTP ones share the supervisor's listening socket. `serve functions` is in functions.py.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import httpx
import typer

from eventgate.app import App
from eventgate.bootstrap import (
    command_service,
    gateway,
    open_broker_of,
    open_cipher,
    open_idempotency,
    open_registry,
    open_system,
    query_service,
    read_model_watcher,
    route_table,
    service_guard,
)
from eventgate.broker.feed import JetStreamFeed
from eventgate.broker.relay import Relay
from eventgate.cli.admin_port import AdminPort, admin_server, one_process, worker_admin
from eventgate.cli.common import (
    AppOption,
    BrokerUrl,
    CliError,
    DatabaseUrl,
    DataDir,
    LogFormat,
    checked,
    chosen_app,
    fail,
    out,
    run,
    serve_app,
    settings_for,
    setup_logging,
)
from eventgate.cli.serving import (
    INTERNAL_TOKEN_ENV,
    address,
    check_exposure,
    internal_token,
    listening_socket,
    run_until_stopped,
    serve_http,
    supervise,
    worker_argv,
    worker_env,
)
from eventgate.config import DEFAULT_DATA_DIR, Settings, redact
from eventgate.gateway.config import GatewayConfig, load_config
from eventgate.gateway.upstream import RemoteUpstream
from eventgate.health.logs import AccessLog, logs_json
from eventgate.health.probes import WithProbes
from eventgate.health.readiness import Readiness, services_check, system_checks
from eventgate.metrics.http import MeteredService
from eventgate.processes.lease import while_leased
from eventgate.processes.membership import Membership
from eventgate.tracing.http import Traced

__all__ = [
    "serve_commands",
    "serve_gateway",
    "serve_projections",
    "serve_queries",
    "serve_relay",
]

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Workers = Annotated[int, typer.Option(min=1, max=64, help="Processes to keep running.")]
Config = Annotated[Path | None, typer.Option(help="TOML config: consumers, limits, keys.")]
Insecure = Annotated[
    bool, typer.Option(help="Allow a non-loopback host without the protection it needs.")
]
Fd = Annotated[int | None, typer.Option(hidden=True, help="Listening socket from a supervisor.")]
Urls = Annotated[list[str], typer.Option(help="Base URL of a service (repeatable).")]


# -- commands and queries ----------------------------------------------------------------


@serve_app.command("commands")
def serve_commands(
    data: DataDir = DEFAULT_DATA_DIR,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free).")] = 8001,
    workers: Workers = 1,
    config: Config = None,
    insecure: Insecure = False,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    fd: Fd = None,
    log_format: LogFormat = None,
    admin_port: AdminPort = None,
) -> None:
    """The command API (and the admin API) of the app, for a gateway in front of it."""
    setup_logging(log_format)
    _serve_service("commands", data, host, port, workers, config, insecure, app_option, url, fd,
                   admin_port)  # fmt: skip


@serve_app.command("queries")
def serve_queries(
    data: DataDir = DEFAULT_DATA_DIR,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free).")] = 8002,
    workers: Workers = 1,
    config: Config = None,
    insecure: Insecure = False,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    fd: Fd = None,
    log_format: LogFormat = None,
    admin_port: AdminPort = None,
) -> None:
    """The query API of the app, following read-model changes from any process."""
    setup_logging(log_format)
    _serve_service("queries", data, host, port, workers, config, insecure, app_option, url, fd,
                   admin_port)  # fmt: skip


def _serve_service(kind: str, data: Path, host: str, port: int, workers: int,
                   config: Path | None, insecure: bool, app_option: str | None,
                   url: str | None, fd: int | None, admin_port: int | None) -> None:  # fmt: skip
    checked(one_process, admin_port, workers)
    served = chosen_app(app_option, config, data)
    settings = settings_for(data, url, config)
    gateway_config = checked(load_config, config)
    argv = worker_argv(kind, data, app_option, config, ["--insecure"] * insecure)

    async def main() -> None:
        token = internal_token()
        check_exposure(host, token is not None, insecure, f"no {INTERNAL_TOKEN_ENV} set")
        sock = listening_socket(host, port, fd)
        if workers > 1:
            out.print(f"eventgate {kind}: {workers} workers on {address(sock)}")
            await supervise(argv, workers, kind, sock, worker_env(url))
        else:
            await _service(kind, settings, served, gateway_config, token, sock, admin_port)

    run(main, kind)


async def _service(kind: str, settings: Settings, served: App, config: GatewayConfig,
                   token: str | None, sock: socket.socket,
                   admin_port: int | None) -> None:  # fmt: skip
    registry = await open_registry(settings)
    try:
        system = await open_system(settings, served)
    except BaseException:
        await registry.close()
        raise
    idempotency = None
    try:
        cipher = await open_cipher(settings, config)
        membership = Membership(registry, [kind], address(sock))
        tasks = [membership.run()]
        if kind == "commands":
            idempotency = await open_idempotency(settings)
            asgi = command_service(system, cipher, idempotency)
        else:
            asgi = query_service(system, cipher, config)
            tasks.append(read_model_watcher(system).run())
        asgi = MeteredService(asgi, route_table(served), kind)
        readiness = Readiness()
        system_checks(readiness, system, projections=kind == "queries")
        tasks += admin_server(admin_port, readiness)
        served_app = WithProbes(
            Traced(AccessLog(service_guard(asgi, token), access=logs_json())), readiness
        )
        out.print(f"eventgate {kind}: {address(sock)} (app {served.name},"
                  f" data in {settings.database_shown})")  # fmt: skip
        await serve_http(served_app, sock, tasks)
    finally:
        if idempotency is not None:
            await idempotency.close()
        await system.close()
        await registry.close()
    out.print(f"eventgate {kind} stopped cleanly")


# -- projections ---------------------------------------------------------------------------


@serve_app.command("projections")
def serve_projections(
    data: DataDir = DEFAULT_DATA_DIR,
    workers: Workers = 1,
    config: Config = None,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
    log_format: LogFormat = None,
    admin_port: AdminPort = None,
) -> None:
    """The upsert service: keeps the read models following the log. Run it in several
    processes (or machines): each projection runs in one of them at a time (a lease per
    projection, shared fairly), and another takes it over within seconds when one dies.
    With --broker it reads the log from NATS JetStream (fed by `eventgate serve relay`)."""
    setup_logging(log_format)
    checked(one_process, admin_port, workers)
    served = chosen_app(app_option, config, data)
    settings = settings_for(data, url, config, broker)
    argv = worker_argv("projections", data, app_option, config)
    if workers > 1:
        run(lambda: supervise(argv, workers, "projections", None, worker_env(url, broker)))
        return
    run(lambda: _projections(settings, served, admin_port), "projections")


async def _projections(settings: Settings, served: App, admin_port: int | None) -> None:
    registry = await open_registry(settings)
    membership = Membership(registry, ["projections"])
    try:
        system = await open_system(settings, served, membership)
    except BaseException:
        await registry.close()
        raise
    broker = None
    try:
        if settings.broker_url is not None:
            broker = await open_broker_of(system, f"eventgate projections {membership.id}")
            system.upsert.read_from(JetStreamFeed(broker, system.store))
        sampler, admin = worker_admin(admin_port, membership, system, broker, projections=True)
        sampler.projections(system.read_store, lambda: system.upsert.held)
        names = ", ".join(p.name for p in served.projections)
        source = f"stream {broker.layout.stream}" if broker else "the store"
        out.print(f"eventgate projections {membership.id}: {names} from {source}"
                  f" (data in {settings.database_shown})")  # fmt: skip
        await run_until_stopped(system.upsert.run, [membership.run(), *admin])
    finally:
        if broker is not None:
            await broker.close()
        await system.close()
        await registry.close()
    out.print(f"eventgate projections {membership.id} stopped cleanly")


# -- relay --------------------------------------------------------------------------------


@serve_app.command("relay")
def serve_relay(
    data: DataDir = DEFAULT_DATA_DIR,
    config: Config = None,
    app_option: AppOption = None,
    url: DatabaseUrl = None,
    broker: BrokerUrl = None,
    log_format: LogFormat = None,
    admin_port: AdminPort = None,
) -> None:
    """Publish every stored event to NATS JetStream (`--broker`), in the store's order and
    exactly once as consumers see it. Run two for a standby: one relays at a time (a lease),
    the other takes over within seconds of its death."""
    setup_logging(log_format)
    served = chosen_app(app_option, config, data)
    settings = settings_for(data, url, config, broker)
    if settings.broker_url is None:
        fail(CliError("serve relay needs --broker nats://host:4222 (or EVENTGATE_BROKER_URL)"))
    run(lambda: _relay(settings, served, admin_port), "relay")


async def _relay(settings: Settings, served: App, admin_port: int | None) -> None:
    registry = await open_registry(settings)
    membership = Membership(registry, ["relay"])
    try:
        system = await open_system(settings, served)
    except BaseException:
        await registry.close()
        raise
    try:
        broker = await open_broker_of(system, f"eventgate relay {membership.id}")
    except BaseException:
        await system.close()
        await registry.close()
        raise
    relay = Relay(system.store, broker)
    out.print(f"eventgate relay {membership.id}: data in {settings.database_shown} -> stream"
              f" {broker.layout.stream} on {redact(broker.url)}")  # fmt: skip
    try:
        leased = lambda: while_leased(membership, "relay", "relay", relay.run)  # noqa: E731
        sampler, admin = worker_admin(admin_port, membership, system, broker)
        sampler.relay(relay.checkpoint)
        await run_until_stopped(leased, [membership.run(), *admin])
    finally:
        await broker.close()
        await system.close()
        await registry.close()
    out.print(f"eventgate relay {membership.id} stopped cleanly")


# -- gateway -------------------------------------------------------------------------------


@serve_app.command("gateway")
def serve_gateway(
    commands: Urls,
    queries: Urls,
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free).")] = 8000,
    workers: Workers = 1,
    config: Config = None,
    insecure: Insecure = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=300, help="Seconds to wait for a service.")
    ] = 10.0,
    app_option: AppOption = None,
    data: DataDir = DEFAULT_DATA_DIR,
    url: DatabaseUrl = None,
    fd: Fd = None,
    log_format: LogFormat = None,
) -> None:
    """The gateway in front of remote command and query services (`--commands URL`,
    `--queries URL`, each repeatable: tried in turn). It needs the app (for its routes and
    OpenAPI document), not its data; with --database-url it registers for `status`."""
    setup_logging(log_format)
    served = chosen_app(app_option, config, data)
    gateway_config = checked(load_config, config)
    settings = settings_for(data, url, config)
    extra = [a for u in commands for a in ("--commands", u)]
    extra += [a for u in queries for a in ("--queries", u)]
    extra += ["--timeout", str(timeout)] + ["--insecure"] * insecure
    argv = worker_argv("gateway", data, app_option, config, extra)

    async def main() -> None:
        token = internal_token()
        exposed = gateway_config.auth_enabled
        check_exposure(host, exposed, insecure, "no API keys ([[gateway.consumers]])")
        sock = listening_socket(host, port, fd)
        if workers > 1:
            out.print(f"eventgate gateway: {workers} workers on {address(sock)}")
            await supervise(argv, workers, "gateway", sock, worker_env(url))
            return
        try:
            upstream = {
                "commands": RemoteUpstream(commands, timeout=timeout, internal_token=token),
                "queries": RemoteUpstream(queries, timeout=timeout, internal_token=token),
            }
        except ValueError as e:
            raise CliError(str(e)) from None
        upstreams = {**upstream, "admin": upstream["commands"]}
        front = gateway(served, gateway_config, upstreams, settings.broker_url)
        # registered where the others are: the database, or a data directory that exists
        registered = settings.database_url is not None or settings.data_dir.is_dir()
        registry = await open_registry(settings) if registered else None
        tasks = [] if registry is None else [Membership(registry, ["gateway"], address(sock)).run()]
        out.print(f"eventgate gateway: {address(sock)} -> commands {', '.join(commands)};"
                  f" queries {', '.join(queries)}")  # fmt: skip
        probe_client = httpx.AsyncClient(timeout=min(timeout, 2.0))
        readiness = Readiness()
        readiness.add("commands", services_check(probe_client, commands, token))
        readiness.add("queries", services_check(probe_client, queries, token))
        try:
            await serve_http(
                WithProbes(Traced(AccessLog(front, access=logs_json())), readiness), sock, tasks
            )
        finally:
            await probe_client.aclose()
            for remote in upstream.values():
                await remote.aclose()
            if registry is not None:
                await registry.close()
        out.print("eventgate gateway stopped cleanly")

    run(main, "gateway")
