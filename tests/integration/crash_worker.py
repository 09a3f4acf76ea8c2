"""Child process for the crash test: commands, atomic multi-event appends and the upsert
service all at once, printing each acknowledged append until it is killed."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from eventgate.bootstrap import System, open_system
from eventgate.config import Settings
from eventgate.errors import EventgateError
from eventgate.eventstore import NewEvent
from eventgate.examples.inventory import inventory_app
from eventgate.examples.inventory.domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    RemoveItemsFromInventory,
    RenameInventoryItem,
)

ITEMS = [f"item-{n}" for n in range(12)]
BATCH_SIZE = 3


def ack(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def commands(system: System, rng: random.Random) -> None:
    while True:
        item = rng.choice(ITEMS)
        command = rng.choice(
            [
                CreateInventoryItem(item, f"name-{rng.randrange(100)}"),
                RenameInventoryItem(item, f"name-{rng.randrange(100)}"),
                CheckInItemsToInventory(item, rng.randrange(1, 10)),
                RemoveItemsFromInventory(item, rng.randrange(1, 10)),
            ]
        )
        try:
            result = await system.commands.execute(command)
        except EventgateError:
            continue
        for event in result.events:
            ack(stream=event.stream_id, version=event.stream_version, position=event.position)


async def batches(system: System, rng: random.Random, writer: int) -> None:
    while True:
        stream = f"batch-{writer}-{rng.randrange(4)}"
        events = [NewEvent("Part", {"of": BATCH_SIZE, "n": n}) for n in range(BATCH_SIZE)]
        for event in await system.store.append(stream, events):
            ack(stream=event.stream_id, version=event.stream_version, position=event.position)


async def main(data: Path, seed: int) -> None:
    system = await open_system(Settings(data_dir=data), inventory_app())
    rng = random.Random(seed)
    async with asyncio.TaskGroup() as group:
        group.create_task(system.upsert.run())
        for _ in range(8):
            group.create_task(commands(system, random.Random(rng.random())))
        for n in range(4):
            group.create_task(batches(system, random.Random(rng.random()), n))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
