"""The composition root: the only place that picks adapters and wires them together."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from eventgate.app import App
from eventgate.broker.connection import Broker, open_broker
from eventgate.broker.consumer import JetStreamRunner
from eventgate.broker.leases import BrokerLeases
from eventgate.broker.wire import Layout
from eventgate.commands.api import command_app
from eventgate.commands.handler import CommandHandler
from eventgate.commands.idempotency import (
    IdempotencyStore,
    PostgresIdempotencyStore,
    SQLiteIdempotencyStore,
)
from eventgate.commands.status import CommandStatuses, status_path_item
from eventgate.config import Settings
from eventgate.console import WithConsole
from eventgate.errors import ConfigError
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.postgres import PostgresEventStore
from eventgate.eventstore.protocol import EventStore
from eventgate.eventstore.sqlite import SQLiteEventStore
from eventgate.functions.admin import admin_app, admin_routes
from eventgate.functions.api import Function
from eventgate.functions.context import Services
from eventgate.functions.postgres import PostgresFunctionStore
from eventgate.functions.state import FunctionStore
from eventgate.functions.store import SQLiteFunctionStore
from eventgate.functions.worker import FunctionWorker
from eventgate.gateway.app import Gateway
from eventgate.gateway.config import GatewayConfig
from eventgate.gateway.internal import InternalOnly, WithHealth
from eventgate.gateway.routes import RouteTable
from eventgate.http.etags import KEY_BYTES, ETagCipher, load_or_create_key
from eventgate.hub.hub import EventHub
from eventgate.metrics.endpoint import MetricsEndpoint
from eventgate.metrics.sampling import Sampler
from eventgate.pgschema import shared_key
from eventgate.processes.membership import Membership
from eventgate.processes.registry import (
    PostgresProcessRegistry,
    ProcessRegistry,
    SQLiteProcessRegistry,
)
from eventgate.projections.admin import ProjectionAdmin
from eventgate.projections.changes import ChangeFeed
from eventgate.projections.postgres import PostgresReadStore
from eventgate.projections.protocol import ReadStore
from eventgate.projections.readstore import SQLiteReadStore
from eventgate.projections.service import UpsertService
from eventgate.projections.watcher import ReadModelWatcher
from eventgate.queries.api import query_app
from eventgate.queries.cache import ViewCache
from eventgate.queries.reader import ResourceReader
from eventgate.resources.openapi import openapi_document
from eventgate.resources.routes import allowed_methods, resource_routes
from eventgate.schemas.asyncapi import asyncapi_document
from eventgate.schemas.openapi import registry_paths
from eventgate.schemas.registry import SchemaRegistry
from eventgate.schemas.released import read_released
from eventgate.streaming.cloudevents import source_of
from eventgate.streaming.sse import EventStream
from eventgate.webhooks.catalog import WebhookCatalog
from eventgate.webhooks.delivery import Sender, private_targets_allowed
from eventgate.webhooks.purge import FunctionPurge
from eventgate.webhooks.store import PostgresWebhookStore, SQLiteWebhookStore, WebhookStore

__all__ = [
    "HTTPSystem",
    "System",
    "command_service",
    "command_statuses",
    "function_worker",
    "gateway",
    "gateway_asyncapi",
    "open_broker_of",
    "open_cipher",
    "open_function_store",
    "open_http",
    "open_idempotency",
    "open_registry",
    "open_system",
    "open_webhook_store",
    "query_service",
    "read_model_watcher",
    "route_table",
    "schema_registry",
    "service_guard",
]


@dataclass
class System:
    """The wired, open parts of one running eventgate; close it when done."""

    settings: Settings
    app: App
    store: EventStore
    read_store: ReadStore
    hub: EventHub
    feed: ChangeFeed
    upsert: UpsertService
    commands: CommandHandler
    functions: FunctionStore
    webhooks: WebhookStore

    async def close(self) -> None:
        await self.webhooks.close()
        await self.functions.close()
        await self.store.close()
        await self.read_store.close()


async def open_system(settings: Settings, app: App, membership: Membership | None = None) -> System:
    """Open the stores (PostgreSQL for events and read models when `settings.database_url`
    says so, else SQLite files under `settings.data_dir`) and wire the components of `app`.
    With a `membership`, projections run only while this process holds their leases."""
    settings.ensure_data_dir()
    store = await _open_event_store(settings, app)
    try:
        read_store = await _open_read_store(settings, app)
    except BaseException:
        await store.close()
        raise
    try:
        functions = await open_function_store(settings)
    except BaseException:
        await store.close()
        await read_store.close()
        raise
    try:
        webhooks = await open_webhook_store(settings)
    except BaseException:
        await functions.close()
        await store.close()
        await read_store.close()
        raise
    hub = EventHub(store)
    feed = ChangeFeed()
    return System(
        settings=settings,
        app=app,
        store=store,
        read_store=read_store,
        hub=hub,
        feed=feed,
        upsert=UpsertService(
            hub,
            read_store,
            feed,
            batch_size=settings.projection_batch_size,
            membership=membership,
        ),
        commands=CommandHandler(store, EventCodec(app.events), app.commands),
        functions=functions,
        webhooks=webhooks,
    )


async def _open_event_store(settings: Settings, app: App) -> EventStore:
    if settings.database_url is not None:
        return await PostgresEventStore.open(
            settings.database_url, upcasters=app.upcasters, poll_interval=settings.poll_interval
        )
    return await SQLiteEventStore.open(
        settings.event_store_path, upcasters=app.upcasters, poll_interval=settings.poll_interval
    )


async def _open_read_store(settings: Settings, app: App) -> ReadStore:
    if settings.database_url is not None:
        return await PostgresReadStore.open(settings.database_url, app.projections)
    return await SQLiteReadStore.open(settings.read_store_path, app.projections)


async def open_function_store(settings: Settings) -> FunctionStore:
    """The functions' state: in PostgreSQL with a database URL, else `functions.sqlite`."""
    if settings.database_url is not None:
        return await PostgresFunctionStore.open(settings.database_url)
    return await SQLiteFunctionStore.open(settings.functions_path)


async def open_webhook_store(settings: Settings) -> WebhookStore:
    """The webhook subscriptions: in PostgreSQL with a database URL, else `webhooks.sqlite`."""
    if settings.database_url is not None:
        return await PostgresWebhookStore.open(settings.database_url)
    return await SQLiteWebhookStore.open(settings.data_dir / "webhooks.sqlite")


async def open_registry(settings: Settings) -> ProcessRegistry:
    """Where the processes of this deployment register: PostgreSQL, else `processes.sqlite`."""
    if settings.database_url is not None:
        return await PostgresProcessRegistry.open(settings.database_url)
    settings.ensure_data_dir()
    return await SQLiteProcessRegistry.open(settings.data_dir / "processes.sqlite")


async def open_idempotency(settings: Settings) -> IdempotencyStore:
    if settings.database_url is not None:
        return await PostgresIdempotencyStore.open(settings.database_url)
    return await SQLiteIdempotencyStore.open(settings.data_dir / "idempotency.sqlite")


def function_worker(
    system: System,
    functions: Sequence[Function],
    settings: Mapping[str, Any] | None = None,
    broker: Broker | None = None,
    **options: Any,
) -> FunctionWorker:
    """A worker that runs `functions` and the webhook subscriptions for `system`; `settings`
    become `ctx.settings`. With a `broker`, the functions consume from JetStream and the
    workers share partitions there."""
    services = Services(
        store=system.store,
        commands=system.commands,
        functions=system.functions,
        data_dir=system.settings.data_dir,
        settings=dict(settings or {}),
    )
    if broker is not None:
        options |= {
            "leases": BrokerLeases(broker, system.functions.partitions),
            "runner": functools.partial(JetStreamRunner, broker=broker),
        }
    sender = Sender(private=private_targets_allowed(os.environ))
    purge = FunctionPurge(system.functions, broker)
    catalog = WebhookCatalog(system.webhooks, source_of(system.app.name), sender, purge)
    return FunctionWorker(functions, services, catalog=catalog, **options)


async def open_broker_of(system: System, name: str) -> Broker:
    """The broker of `system` (its settings must name one), with the app's stream in place;
    partitioned as the function store is, so both deliveries agree on a stream's partition."""
    if system.settings.broker_url is None:
        raise ConfigError("no broker configured (--broker nats://host:4222)")
    layout = Layout(system.app.name, system.functions.partitions)
    return await open_broker(system.settings.broker_url, layout, name)


def service_guard(app: ASGIApp, token: str | None) -> ASGIApp:
    """`app` answering only requests that carry the gateway's internal token (if one is set),
    with the health check the gateway exports use (gateway/internal.py)."""
    checked = WithHealth(app)
    return checked if token is None else InternalOnly(checked, token)


async def open_cipher(settings: Settings, config: GatewayConfig) -> ETagCipher:
    """The ETag key every command and query service of one deployment shares: the config's,
    else the database's (created once), else the data directory's `etag.key`."""
    if config.etag_key_hex:
        return ETagCipher(bytes.fromhex(config.etag_key_hex))
    if settings.database_url is not None:  # a key this data directory had is kept
        path = settings.data_dir / "etag.key"
        seed = path.read_bytes() if path.is_file() else None
        return ETagCipher(await shared_key(settings.database_url, "etag", KEY_BYTES, seed))
    return ETagCipher(load_or_create_key(settings.data_dir / "etag.key"))


def command_service(system: System, cipher: ETagCipher, idempotency: IdempotencyStore) -> ASGIApp:
    """The command API of `system`'s app, with the admin API under /admin and the console's
    files at /console (for the gateway exports; eventgate's own gateway answers them itself)."""
    commands = command_app(
        system.app.resources, system.commands, cipher, idempotency, command_statuses(system)
    )
    private = private_targets_allowed(os.environ)
    projections = ProjectionAdmin(system.upsert, system.read_store, system.store)
    admin = admin_app(system.functions, system.store, system.webhooks, private_targets=private,
                      projections=projections)  # fmt: skip

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        chosen = admin if scope.get("path", "").startswith("/admin/") else commands
        await chosen(scope, receive, send)

    return WithConsole(serve)


def query_service(system: System, cipher: ETagCipher, config: GatewayConfig) -> ASGIApp:
    """The query API of `system`'s app, answering through a cache the change feed empties."""
    resources = system.app.resources
    views = {view.projection.name for r in resources for view in (r.item, r.list) if view}
    reader = ResourceReader(system.read_store, ViewCache(system.feed, views))
    return query_app(
        resources,
        reader,
        system.feed,
        cipher,
        allow=allowed_methods(resources, route_table(system.app)),
        consistency_wait=config.consistency_wait,
        events=EventStream(
            system.store,
            source_of(system.app.name),
            max_per_consumer=config.max_streams_per_consumer,
        ),
        schemas=schema_registry(system.app),
        statuses=command_statuses(system),
    )


def command_statuses(system: System) -> CommandStatuses:
    """What tells a client what became of its command (`/api/commands/{id}`)."""
    return CommandStatuses(
        system.store,
        system.read_store,
        system.functions,
        system.app,
        function_progress=system.settings.broker_url is None,
    )


def read_model_watcher(system: System, *, local: bool = False) -> ReadModelWatcher:
    """What brings read-model changes made by other processes onto `system.feed`; `local`:
    this process runs the upsert service too (its views need no polling while it does)."""
    return ReadModelWatcher(
        system.read_store,
        system.feed,
        database_url=system.settings.database_url,
        local=(lambda: system.upsert.held) if local else frozenset,
    )


def route_table(app: App) -> RouteTable:
    """The gateway's routes of `app`: its resources (commands, queries) and the admin API."""
    return RouteTable([*resource_routes(app.resources), *admin_routes()])


def gateway_openapi(app: App, config: GatewayConfig) -> dict[str, Any]:
    """The OpenAPI document the gateway of `app` serves at /openapi.json (so do its exports)."""
    document = openapi_document(app.name, app.resources, secured=config.auth_enabled)
    document["paths"] |= registry_paths() | status_path_item()
    return document


def gateway_asyncapi(
    app: App, config: GatewayConfig, broker_url: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI document the gateway of `app` serves at /asyncapi.json."""
    return asyncapi_document(app, broker_url=broker_url, secured=config.auth_enabled)


def schema_registry(app: App) -> SchemaRegistry:
    """The registry of `app`'s event schemas: the code's, and older versions from the
    released file the app names (docs/schemas.md)."""
    path = app.event_schemas
    return SchemaRegistry(app.events, read_released(path) if path and path.is_file() else None)


def gateway(
    app: App,
    config: GatewayConfig,
    upstreams: Mapping[str, ASGIApp],
    broker_url: str | None = None,
    sampler: Sampler | None = None,
) -> Gateway:
    """The gateway of `app` in front of `upstreams` (in-process apps or RemoteUpstreams);
    `broker_url` puts the broker's channels in its AsyncAPI document. It answers /metrics
    (scope admin), reading what `sampler` reads first."""
    return Gateway(route_table(app), upstreams, config, gateway_openapi(app, config),
                   gateway_asyncapi(app, config, broker_url),
                   metrics=MetricsEndpoint(sampler))  # fmt: skip


@dataclass
class HTTPSystem:
    """The gateway in front of the command and query apps of one open `System`."""

    system: System
    gateway: Gateway
    idempotency: IdempotencyStore
    watcher: ReadModelWatcher
    sampler: Sampler
    """What /metrics reads from the stores: each role running here adds its part."""

    async def close(self) -> None:
        await self.idempotency.close()
        await self.system.close()


async def open_http(
    settings: Settings, config: GatewayConfig, app: App, membership: Membership | None = None
) -> HTTPSystem:
    """Open the system of `app` and wire its command and query apps behind the gateway."""
    system = await open_system(settings, app, membership)
    try:
        cipher = await open_cipher(settings, config)
        idempotency = await open_idempotency(settings)
    except BaseException:
        await system.close()
        raise
    commands = command_service(system, cipher, idempotency)
    upstreams = {
        "commands": commands,
        "queries": query_service(system, cipher, config),
        "admin": commands,
    }
    sampler = Sampler(system.store)
    return HTTPSystem(
        system,
        gateway(app, config, upstreams, settings.broker_url, sampler),
        idempotency,
        read_model_watcher(system),
        sampler,
    )
