"""Named subscriptions: global order, type filters, durable checkpoints, resumption."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventgate.errors import ConfigError
from eventgate.eventstore import NewEvent, SQLiteEventStore
from eventgate.hub import Delivery, EventHub, SQLiteCheckpointStore, TypeFilter


async def take(subscription_iter: object, count: int) -> list[Delivery]:
    return [await anext(subscription_iter) for _ in range(count)]  # type: ignore[call-overload]


def test_type_filters_take_names_and_globs() -> None:
    items = TypeFilter(["Items*", "InventoryItemCreated"])
    assert items("ItemsCheckedInToInventory") and items("InventoryItemCreated")
    assert not items("InventoryItemRenamed")
    assert TypeFilter()("Anything")
    with pytest.raises(ConfigError):
        TypeFilter([])


async def test_a_subscription_filters_by_type_and_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    checkpoints = await SQLiteCheckpointStore.open(tmp_path / "checkpoints.sqlite")
    hub = EventHub(store)
    for n in range(6):
        await store.append(f"s-{n % 2}", [NewEvent("Wanted" if n % 3 else "Other", {"n": n})])

    subscription = hub.subscription("audit", checkpoints, types=["Want*"], batch_size=4)
    deliveries = aiter(subscription)
    first = await anext(deliveries)
    assert (first.after, first.position) == (0, 4)
    assert [e.data["n"] for e in first.events] == [1, 2]
    await subscription.commit(first)
    await deliveries.aclose()  # type: ignore[attr-defined]
    await checkpoints.close()
    await store.close()

    # a restart: new objects on the same files resume after the stored checkpoint
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    checkpoints = await SQLiteCheckpointStore.open(tmp_path / "checkpoints.sqlite")
    subscription = EventHub(store).subscription("audit", checkpoints, types=["Want*"])
    assert await subscription.checkpoint() == 4
    deliveries = aiter(subscription)
    second = await anext(deliveries)
    assert (second.after, second.position) == (4, 6)
    assert [e.data["n"] for e in second.events] == [4, 5]
    await deliveries.aclose()  # type: ignore[attr-defined]
    await checkpoints.close()
    await store.close()


async def test_subscription_names_are_checked(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "events.sqlite")
    checkpoints = await SQLiteCheckpointStore.open(tmp_path / "checkpoints.sqlite")
    try:
        with pytest.raises(ConfigError):
            EventHub(store).subscription("bad name; drop", checkpoints)
    finally:
        await checkpoints.close()
        await store.close()
