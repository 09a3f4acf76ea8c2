"""The orders app over real HTTP through `eventgate up --app eventgate.examples.orders:app`:
orders confirmed, rejected with their reason, cancelled with the stock given back, listed by
status; the saga runs asynchronously, so clients poll the order until it has settled."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.server import Server

from .client import create_item, current_count, orders_server, place, settled

pytestmark = pytest.mark.slow

CANCEL = {"Content-Type": "application/json; domain-model=CancelOrder"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = orders_server(tmp_path_factory.mktemp("data")).start()
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_an_order_in_stock_is_confirmed_and_takes_its_stock(client: httpx.Client) -> None:
    book, pen = create_item(client, "book", 5), create_item(client, "pen", 3)
    accepted = place(client, (book, 2), (pen, 3))
    assert accepted.headers["Location"] == f"/api/orders/{accepted.json()['id']}"
    order = settled(client, accepted)
    assert order == {
        "id": accepted.json()["id"],
        "status": "confirmed",
        "reason": None,
        "lines": [
            {"item": book, "count": 2, "state": "reserved"},
            {"item": pen, "count": 3, "state": "reserved"},
        ],
        "settled": True,
        "version": 4,  # placed, two lines reserved, confirmed
    }
    assert (current_count(client, book), current_count(client, pen)) == (3, 0)


def test_an_order_out_of_stock_is_rejected_with_its_reason(client: httpx.Client) -> None:
    book, pen = create_item(client, "book", 5), create_item(client, "pen", 1)
    order = settled(client, place(client, (book, 4), (pen, 2)))
    assert (order["status"], order["reason"]) == (
        "rejected",
        "cannot remove 2 items: only 1 in stock",
    )
    assert [line["state"] for line in order["lines"]] == ["released", "refused"]
    assert (current_count(client, book), current_count(client, pen)) == (5, 1)


def test_cancelling_gives_the_stock_back_and_cancelling_again_changes_nothing(
    client: httpx.Client,
) -> None:
    book = create_item(client, "book", 5)
    placed = place(client, (book, 2), (book, 1))
    assert settled(client, placed)["status"] == "confirmed"
    assert current_count(client, book) == 2
    url = placed.headers["Location"]
    cancelled = client.post(url, headers=CANCEL)
    assert cancelled.status_code == 202
    order = settled(client, cancelled)
    assert order["status"] == "cancelled"
    assert [line["state"] for line in order["lines"]] == ["released", "released"]
    assert current_count(client, book) == 5
    again = client.post(url, headers=CANCEL)  # a no-op: 202, no new event
    assert again.status_code == 202
    assert settled(client, again)["version"] == order["version"]


def test_orders_are_listed_and_filtered_by_status(client: httpx.Client) -> None:
    book = create_item(client, "book", 1)
    confirmed = place(client, (book, 1))
    assert settled(client, confirmed)["status"] == "confirmed"
    rejected = place(client, (book, 1))  # the last one is taken
    assert settled(client, rejected)["status"] == "rejected"
    ids = {"confirmed": confirmed.json()["id"], "rejected": rejected.json()["id"]}
    for status, order_id in ids.items():
        page = client.get("/api/orders", params={"status": status, "limit": 500}).json()
        assert {"id": order_id, "status": status} in page["items"]
        assert {item["status"] for item in page["items"]} == {status}


@pytest.mark.parametrize(
    "body",
    [
        {"lines": []},
        {"lines": [{"item": "00000000-0000-4000-8000-000000000000", "count": 0}]},
        {"lines": [{"item": "not-an-item-id", "count": 1}]},
        {"lines": [{"item": "00000000-0000-4000-8000-000000000000", "count": 1}] * 51},
    ],
)
def test_an_order_needs_1_to_50_lines_of_item_ids_and_positive_counts(
    client: httpx.Client, body: object
) -> None:
    refused = client.post("/api/orders", json=body)
    assert refused.status_code == 422, refused.text


def test_cancelling_an_unknown_order_is_404(client: httpx.Client) -> None:
    assert (
        client.post("/api/orders/00000000-0000-4000-8000-000000000000", headers=CANCEL).status_code
        == 404
    )


def test_the_status_of_a_rejected_order_shows_the_saga_s_steps_and_compensation(
    client: httpx.Client,
) -> None:
    book, pen = create_item(client, "book", 5), create_item(client, "pen", 1)
    accepted = place(client, (book, 4), (pen, 2))
    settled(client, accepted)
    deadline = time.monotonic() + 10
    url = accepted.json()["links"]["status"]
    while (status := client.get(url).json())["outcome"] == "pending":
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["commandType"] == "PlaceOrder"
    assert status["outcome"] == "rejected"  # OrderRejected declares it; the releases ran
    follow_ups = status["followUps"]
    saga = [f for f in follow_ups if f["function"] == "order_saga"]
    steps = [(f["commandType"], [e["type"] for e in f["events"]]) for f in saga]
    assert steps == [
        ("RemoveItemsFromInventory", ["ItemsRemovedFromInventory"]),  # line 0 reserved
        ("RecordReservation", ["OrderLineReserved"]),
        ("RecordReservation", ["OrderRejected"]),  # line 1 refused: the order rejected
        ("CheckInItemsToInventory", ["ItemsCheckedInToInventory"]),  # line 0 given back
        ("RecordRelease", ["OrderLineReleased"]),
    ]
    order_url = accepted.headers["Location"]
    assert status["resources"] == [order_url]
    [alert] = [f for f in follow_ups if f["function"] == "low_stock_alert"]  # on the removal
    assert "commandId" not in alert and [e["type"] for e in alert["events"]] == [
        "InventoryLowStock"
    ]
    changed = {url for step in follow_ups for url in step["resources"]}
    assert changed == {order_url, f"/api/inventory-items/{book}"}
