"""The reproductions of the hostile-input report, replayed against the inventory."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import create, read, stock

CHECK_IN = "CheckInItemsToInventory"


def test_a_count_past_the_i_json_range_is_422_and_the_read_side_keeps_serving(
    client: httpx.Client,
) -> None:
    item = create(client, "overflow")
    url = item.headers["Location"]
    for count in (9223372036854775807, 10**33, 2**53):
        refused = stock(client, url, CHECK_IN, count)
        assert refused.status_code == 422 and "$.count" in refused.json()["detail"]
    accepted = stock(client, url, CHECK_IN, 2)
    assert accepted.status_code == 202
    assert read(client, accepted).json()["currentCount"] == 2
    later = create(client, "after the attempt")
    assert read(client, later).status_code == 200  # every other item is served


def test_stock_past_its_declared_maximum_is_409_with_the_reason(client: httpx.Client) -> None:
    url = create(client).headers["Location"]
    assert stock(client, url, CHECK_IN, 1_000_000_000).status_code == 202
    refused = stock(client, url, CHECK_IN, 1)
    assert refused.status_code == 409 and "at most 1000000000" in refused.json()["detail"]


def test_numeric_strings_are_read_only_in_their_documented_form(client: httpx.Client) -> None:
    url = create(client).headers["Location"]
    assert stock(client, url, CHECK_IN, "230").status_code == 202
    for text in ("00", "0230", "1e3", " 5", "+5"):
        assert stock(client, url, CHECK_IN, text).status_code == 422, text


def test_an_empty_cursor_is_the_first_page(client: httpx.Client) -> None:
    assert client.get("/api/inventory-items", params={"cursor": ""}).status_code == 200
