"""Webhook benchmark: deliveries per second to a local receiver (signed CloudEvent POSTs over
loopback, the receiver in the same process answering 204), from a log of a few thousand
events in 100 streams to one subscription, on SQLite files.
Usage: python bench/webhook_load.py [--events N] [--json]"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from aiohttp import web

from eventgate.bootstrap import open_system
from eventgate.config import Settings
from eventgate.eventstore import NewEvent
from eventgate.examples.inventory import inventory_app
from eventgate.functions.context import Services
from eventgate.functions.worker import FunctionWorker
from eventgate.streaming.cloudevents import source_of
from eventgate.webhooks.catalog import WebhookCatalog
from eventgate.webhooks.delivery import Sender
from eventgate.webhooks.model import parse_new

STREAMS = 100


async def webhook_eps(events: int = 3000) -> float:
    """Deliveries per second of `events` events to a receiver on loopback (each event once
    the receiver de-duplicates by webhook-id; every delivery 2xx)."""
    seen: set[str] = set()
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        seen.add(request.headers["webhook-id"])
        if len(seen) >= events:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    with tempfile.TemporaryDirectory() as directory:
        system = await open_system(Settings(data_dir=Path(directory)), inventory_app())
        try:
            for start in range(0, events, 500):
                await asyncio.gather(*(
                    system.store.append(f"bench-{i % STREAMS}", [NewEvent("Tick", {"n": i})])
                    for i in range(start, min(events, start + 500))
                ))  # fmt: skip
            body = {"url": f"http://127.0.0.1:{port}/hook", "start": "beginning"}
            await system.webhooks.create(parse_new(body, await system.store.head()))
            services = Services(system.store, system.commands, system.functions, Path(directory))
            catalog = WebhookCatalog(system.webhooks, source_of("bench"), Sender(private=True))
            worker = FunctionWorker([], services, catalog=catalog, heartbeat=0.2, ttl=2.0)
            began = time.perf_counter()
            task = asyncio.create_task(worker.run())
            await done.wait()
            elapsed = time.perf_counter() - began
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await system.close()
            await runner.cleanup()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3000, help="events to deliver")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    options = parser.parse_args()
    eps = uvloop.run(webhook_eps(options.events))
    print(f"{'webhook_eps':>24}  {eps:,.0f}")
    if options.json:
        print(json.dumps({"webhook_eps": round(eps)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
