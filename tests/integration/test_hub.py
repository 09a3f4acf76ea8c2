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


def test_type_filters_match_names_exactly_and_globs_as_fnmatch_does() -> None:
    wanted = TypeFilter(["Item?Created", "[AB]dded", "Item.Renamed"])
    assert wanted("ItemsCreated") and wanted("Added") and wanted("Item.Renamed")
    assert not wanted("ItemCreated") and not wanted("Cdded") and not wanted("ItemxRenamed")


@pytest.mark.parametrize(
    ("patterns", "limit"),
    [
        (["x" * 201], "200 characters"),
        (["*a" * 9], "8 '*'"),
        (["*a" * 600 + "b"], "200 characters"),  # the reviewer's: 0.5 s to compile, 50 of them
        ([f"Item{n}*" + "x" * 190 for n in range(6)], "1000 characters together"),
    ],
)
def test_a_type_filter_past_its_limits_is_refused_naming_the_limit(
    patterns: list[str], limit: str
) -> None:
    with pytest.raises(ConfigError, match=limit):
        TypeFilter(patterns)


def test_a_type_filter_takes_patterns_at_its_limits() -> None:
    names = TypeFilter(["x" * 200] * 50)  # names cost no regex: any number of them
    assert names("x" * 200)
    assert TypeFilter(["*a" * 8, *[f"I{n}*" + "x" * 190 for n in range(4)]])("aaaaaaaa")


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
