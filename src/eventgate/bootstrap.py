"""The composition root: the only place that picks adapters and wires them together."""

from __future__ import annotations

from dataclasses import dataclass

from eventgate.app import App
from eventgate.commands.handler import CommandHandler
from eventgate.config import Settings
from eventgate.eventstore.codec import EventCodec
from eventgate.eventstore.sqlite import SQLiteEventStore
from eventgate.hub.hub import EventHub
from eventgate.projections.changes import ChangeFeed
from eventgate.projections.readstore import SQLiteReadStore
from eventgate.projections.service import UpsertService

__all__ = ["System", "open_system"]


@dataclass
class System:
    """The wired, open parts of one running eventgate; close it when done."""

    settings: Settings
    app: App
    store: SQLiteEventStore
    read_store: SQLiteReadStore
    hub: EventHub
    feed: ChangeFeed
    upsert: UpsertService
    commands: CommandHandler

    async def close(self) -> None:
        await self.store.close()
        await self.read_store.close()


async def open_system(settings: Settings, app: App) -> System:
    """Open the stores under `settings.data_dir` and wire the components of `app`."""
    settings.ensure_data_dir()
    store = await SQLiteEventStore.open(
        settings.event_store_path, upcasters=app.upcasters, poll_interval=settings.poll_interval
    )
    try:
        read_store = await SQLiteReadStore.open(settings.read_store_path, app.projections)
    except BaseException:
        await store.close()
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
        upsert=UpsertService(hub, read_store, feed, batch_size=settings.projection_batch_size),
        commands=CommandHandler(store, EventCodec(app.events), app.commands),
    )
