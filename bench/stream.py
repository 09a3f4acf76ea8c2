"""Events to clients: Server-Sent Events fan-out and latency through `eventgate up` (SQLite),
and webhook deliveries.

- `sse_fanout_eps`: 100 clients each read the whole log (EVENTS events, from the start) over
  `GET /api/events` at once; deliveries per second summed over the clients.
- `append_to_sse_p50_ms`, `append_to_sse_p99_ms`: 100 clients follow the log live while
  commands are POSTed through the gateway at a steady 1,000 events/s (10 every 10 ms); from
  each event's commit time (its CloudEvent `time`) to its arrival at each client.
- `webhook_eps`: signed webhook POSTs per second to a local receiver (bench/webhook_load.py).

The server and this client share the machine's cores, so these are figures of the two
together. Usage: python bench/stream.py [--json] [--clients 100] [--events 5000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from http_load import start_eventgate
from webhook_load import webhook_eps

ROOT = Path(__file__).resolve().parents[1]
RATE = 1000
TICK = 0.01
_TIME = re.compile(rb'"time":"([^"]+)"')


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def post_events(session: aiohttp.ClientSession, count: int, concurrency: int = 32) -> int:
    """Create `count` items (one event each) as fast as the gateway takes them; the last
    event's position (from its consistency token's command status)."""
    left = iter(range(count))
    last = 0

    async def poster() -> None:
        nonlocal last
        for n in left:
            async with session.post("/api/inventory-items", json={"name": f"s{n}"}) as answer:
                if answer.status != 202:
                    raise SystemExit(f"POST answered {answer.status}: {await answer.text()}")
                await answer.read()

    await asyncio.gather(*(poster() for _ in range(concurrency)))
    async with session.get("/api/events", headers={"Last-Event-ID": "0"},
                           params={"heartbeat": "1"}) as stream:  # fmt: skip
        async for chunk in stream.content.iter_any():
            last = max(last, _last_id(chunk))
            if last and b": heartbeat" in chunk:
                return last
    return last


async def reader(
    session: aiohttp.ClientSession, after: int, until: int | None, arrivals: list[float] | None
) -> int:
    """Follow the log after `after` until position `until` (or cancelled): how many events it
    got; with `arrivals`, each event's delay since its commit time, in ms."""
    got = 0
    buffer = b""
    async with session.get("/api/events", headers={"Last-Event-ID": str(after)}) as stream:
        async for chunk in stream.content.iter_any():
            now = time.time()
            buffer += chunk
            frames, _, buffer = buffer.rpartition(b"\n\n")
            if not frames:
                continue
            if arrivals is not None:
                for stamp in _TIME.findall(frames):
                    sent = datetime.fromisoformat(stamp.decode().replace("Z", "+00:00"))
                    arrivals.append((now - sent.timestamp()) * 1000)
            got += frames.count(b"\nid: ") + frames.startswith(b"id: ")
            if until is not None and _last_id(frames) >= until:
                return got
    return got


async def fanout(url: str, clients: int, events: int) -> float:
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=0)) as session:
        say(f"appending {events:,} events ...")
        last = await post_events(session, events)
        say(f"{clients} clients reading them all ...")
        started = time.perf_counter()
        counts = await asyncio.gather(*(reader(session, 0, last, None) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return sum(counts) / elapsed


async def latency(url: str, clients: int, seconds: float) -> tuple[float, float, int]:
    arrivals: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        head = await post_events(session, 1, 1)
        tasks = [asyncio.create_task(reader(session, head, None, arrivals))
                 for _ in range(clients)]  # fmt: skip
        await asyncio.sleep(1.0)  # every client connected and following
        say(f"{clients} clients following, {RATE:,} events/s for {seconds:g} s ...")
        per_tick = int(RATE * TICK)
        ticks = int(seconds / TICK)
        start = time.perf_counter()
        posts: list[asyncio.Task[Any]] = []
        for tick in range(ticks):
            for n in range(per_tick):
                body = {"name": f"l{tick}-{n}"}
                posts.append(asyncio.create_task(_post(session, body)))
            await asyncio.sleep(max(0.0, start + (tick + 1) * TICK - time.perf_counter()))
        await asyncio.gather(*posts)
        await asyncio.sleep(1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    expected = ticks * per_tick * clients
    ordered = sorted(arrivals)
    if len(ordered) < expected:
        raise SystemExit(f"only {len(ordered):,} of {expected:,} deliveries arrived")
    return _pct(ordered, 50), _pct(ordered, 99), len(ordered)


async def _post(session: aiohttp.ClientSession, body: dict[str, str]) -> None:
    async with session.post("/api/inventory-items", json=body) as answer:
        if answer.status != 202:
            raise SystemExit(f"POST answered {answer.status}")
        await answer.read()


def _last_id(frames: bytes) -> int:
    """The id of the last whole message in `frames` (0 if none)."""
    start = frames.rfind(b"id: ")
    end = frames.find(b"\n", start)
    return int(frames[start + 4 : end]) if start >= 0 and end > start else 0


def _pct(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line of results")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=5000, help="for the fan-out")
    parser.add_argument("--seconds", type=float, default=5.0, help="of steady appends")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_eventgate(Path(tmp) / "data")
        try:
            results["sse_fanout_eps"] = round(uvloop.run(fanout(url, args.clients, args.events)))
            p50, p99, count = uvloop.run(latency(url, args.clients, args.seconds))
            results |= {
                "append_to_sse_p50_ms": round(p50, 2),
                "append_to_sse_p99_ms": round(p99, 2),
                "sse_deliveries": count,
            }
        finally:
            process.terminate()
            process.wait(10)
    say("webhook deliveries ...")
    results["webhook_eps"] = round(uvloop.run(webhook_eps()))
    results["clients"] = args.clients
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    results["date"] = time.strftime("%Y-%m-%d")
    for key, value in results.items():
        print(f"{key:>24}  {value:,}" if isinstance(value, int | float) else f"{key:>24}  {value}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
