"""The event hub: subscriptions with durable checkpoints over the event store."""

from __future__ import annotations

from eventgate.hub.checkpoints import CheckpointStore, SQLiteCheckpointStore
from eventgate.hub.hub import Delivery, EventHub, Subscription, TypeFilter

__all__ = [
    "CheckpointStore",
    "Delivery",
    "EventHub",
    "SQLiteCheckpointStore",
    "Subscription",
    "TypeFilter",
]
