"""An HTTP client's view of the orders app, for the tests that run a real `eventgate up`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.e2e.server import Server

APP = ("--app", "eventgate.examples.orders:app")


def orders_server(data: Any) -> Server:
    return Server(data, *APP)


def create_item(client: httpx.Client, name: str, stock: int) -> str:
    created = client.post("/api/inventory-items", json={"name": name})
    assert created.status_code == 202, created.text
    item: str = created.json()["id"]
    if stock:
        checked_in = client.post(
            f"/api/inventory-items/{item}",
            json={"count": stock},
            headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory"},
        )
        assert checked_in.status_code == 202, checked_in.text
    return item


def current_count(client: httpx.Client, item: str) -> int:
    found = client.get(f"/api/inventory-items/{item}")
    assert found.status_code == 200, found.text
    count: int = found.json()["currentCount"]
    return count


def place(client: httpx.Client, *lines: tuple[str, int]) -> httpx.Response:
    body = {"lines": [{"item": item, "count": count} for item, count in lines]}
    placed = client.post("/api/orders", json=body)
    assert placed.status_code == 202, placed.text
    return placed


def settled(client: httpx.Client, accepted: httpx.Response, within: float = 15) -> dict[str, Any]:
    """The order of a 202, read with its Consistency-Token until the saga has settled it;
    `lines` decoded from its JSON text."""
    token = {"Consistency-Token": accepted.headers["Consistency-Token"]}
    deadline = time.monotonic() + within
    while True:
        found = client.get(accepted.headers["Location"], headers=token)
        assert found.status_code == 200, found.text
        assert found.headers["Consistency-Status"] == "current"
        order: dict[str, Any] = found.json()
        if order["settled"]:
            return {**order, "lines": json.loads(order["lines"])}
        assert time.monotonic() < deadline, f"order did not settle: {order}"
        time.sleep(0.05)


async def settled_async(
    client: httpx.AsyncClient, order_id: str, within: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await client.get(f"/api/orders/{order_id}")
        if found.status_code == 200 and found.json()["settled"]:
            order: dict[str, Any] = found.json()
            return order
        assert time.monotonic() < deadline, f"order {order_id} did not settle: {found.text}"
        await asyncio.sleep(0.1)
