"""A writer process for the gap-safety test: appends with randomly delayed commits.

Usage: python -m tests.integration.pg_writer DSN WRITER_ID APPENDS SEED
Each transaction is the store's own append (`eventgate_append`, one to three per
transaction, as a group commit makes them), then a random sleep before COMMIT, so positions
are taken long before they become visible, out of order with other writers' commits.
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime

import asyncpg
import orjson
import uuid_utils

from eventgate.eventstore.postgres import APPEND, CHANNEL


async def main(dsn: str, writer: int, appends: int, seed: int) -> None:
    rng = random.Random(seed)
    connection = await asyncpg.connect(dsn)
    try:
        for n in range(appends):
            sizes = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))]  # appends in one commit
            async with connection.transaction():
                rows = await connection.fetch(
                    APPEND,
                    [f"w{writer}-s{(n + k) % 7}" for k in range(len(sizes))],
                    [None] * len(sizes),
                    sizes,
                    datetime.now(UTC),
                    [str(uuid_utils.uuid7()) for _ in range(sum(sizes))],
                    ["Written"] * sum(sizes),
                    [1] * sum(sizes),
                    [orjson.dumps({"writer": writer, "n": n}).decode()] * sum(sizes),
                    ["{}"] * sum(sizes),
                )
                assert [r["outcome"] for r in rows] == ["ok"] * len(sizes), rows
                await connection.execute(f"NOTIFY {CHANNEL}")
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.01, 0.05, 0.2]))
    finally:
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
