"""Command API rows of the contract, over real HTTP through the gateway."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.conftest import create, item_url, read, stock

PROBLEM = "application/problem+json"


def test_create_answers_202_with_location_command_id_and_token(client: httpx.Client) -> None:
    response = create(client, "CQRS Book")
    body = response.json()
    assert set(body) == {"commandId", "id", "consistencyToken", "status", "links"}
    assert body["status"] == "accepted"
    assert response.headers["Location"] == f"/api/inventory-items/{body['id']}"
    monitor = f"/api/commands/{body['commandId']}"
    assert body["links"] == {"status": monitor, "resource": response.headers["Location"]}
    assert response.headers["Link"] == f'<{monitor}>; rel="monitor"'
    assert response.headers["Consistency-Token"] == body["consistencyToken"]
    assert response.headers["Command-Id"] == body["commandId"]
    assert "domain-model=CommandAccepted" in response.headers["Content-Type"]
    assert read(client, response).json()["name"] == "CQRS Book"


def test_a_client_supplied_id_is_used_and_cannot_be_taken_twice(client: httpx.Client) -> None:
    item_id = str(uuid.uuid4())
    assert create(client, id=item_id).json()["id"] == item_id
    again = client.post("/api/inventory-items", json={"name": "x", "id": item_id})
    assert again.status_code == 409 and again.headers["Content-Type"] == PROBLEM


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"name": ', 400),
        (b"", 400),
        (b'{"name": ""}', 422),
        (b'{"name": "   "}', 422),
        (('{"name": "' + "x" * 201 + '"}').encode(), 422),
        (b'{"name": 5}', 422),
        (b'{"nam": "x"}', 422),
        (b"[1, 2]", 422),
        (b'{"name": "x", "id": "not-a-uuid"}', 422),
    ],
)
def test_malformed_bodies_are_400_and_invalid_values_422(
    client: httpx.Client, body: bytes, status: int
) -> None:
    response = client.post(
        "/api/inventory-items", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    problem = response.json()
    assert response.headers["Content-Type"] == PROBLEM
    assert problem["status"] == status and "Traceback" not in response.text


def test_a_name_of_200_characters_is_accepted(client: httpx.Client) -> None:
    create(client, "x" * 200)


def test_a_body_that_is_not_json_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/api/inventory-items", content=b"name=x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


def test_a_wrong_domain_model_on_create_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/api/inventory-items",
        content=b'{"name": "x"}',
        headers={"Content-Type": "application/json; domain-model=RenameInventoryItem"},
    )
    assert response.status_code == 415
    ok = client.post(
        "/api/inventory-items",
        content=b'{"name": "x"}',
        headers={"Content-Type": "application/json; domain-model=CreateInventoryItemCommand"},
    )
    assert ok.status_code == 202


def test_rename_honours_if_match(client: httpx.Client) -> None:
    created = create(client)
    etag = read(client, created).headers["ETag"]
    url = item_url(created)
    renamed = client.put(url, json={"newName": "gadget"}, headers={"If-Match": etag})
    assert renamed.status_code == 202
    stale = client.put(url, json={"newName": "sprocket"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert read(client, renamed).json()["name"] == "gadget"
    garbage = client.put(url, json={"newName": "x"}, headers={"If-Match": '"not-ours"'})
    assert garbage.status_code == 412
    anything = client.put(url, json={"newName": "any"}, headers={"If-Match": "*"})
    assert anything.status_code == 202


def test_an_etag_of_one_item_does_not_match_another(client: httpx.Client) -> None:
    first, second = create(client), create(client)
    etag = read(client, first).headers["ETag"]
    read(client, second)
    response = client.put(item_url(second), json={"newName": "x"}, headers={"If-Match": etag})
    assert response.status_code == 412


def test_commands_on_an_unknown_item_are_404(client: httpx.Client) -> None:
    url = f"/api/inventory-items/{uuid.uuid4()}"
    assert client.put(url, json={"newName": "x"}).status_code == 404
    assert client.delete(url).status_code == 404
    assert stock(client, url, "CheckInItemsToInventory", 1).status_code == 404


def test_if_match_star_on_an_unknown_item_is_412(client: httpx.Client) -> None:
    url = f"/api/inventory-items/{uuid.uuid4()}"
    assert client.put(url, json={"newName": "x"}, headers={"If-Match": "*"}).status_code == 412


def test_deactivating_twice_is_202_without_a_new_event(client: httpx.Client) -> None:
    created = create(client)
    etag = read(client, created).headers["ETag"]
    first = client.delete(item_url(created))
    second = client.delete(item_url(created))
    assert first.status_code == second.status_code == 202
    assert first.headers["Consistency-Token"] == second.headers["Consistency-Token"]
    assert client.delete(item_url(created), headers={"If-Match": etag}).status_code == 412
    assert read(client, second).status_code == 410


def test_stock_moves_are_chosen_by_domain_model(client: httpx.Client) -> None:
    created = create(client)
    url = item_url(created)
    assert stock(client, url, "CheckInItemsToInventoryCommand", "230").status_code == 202
    removed = stock(client, url, "RemoveItemsFromInventory", 30)
    assert removed.status_code == 202
    assert read(client, removed).json()["currentCount"] == 200


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; domain-model=Nope"]
)
def test_a_stock_post_without_a_known_domain_model_is_415(
    client: httpx.Client, content_type: str
) -> None:
    url = item_url(create(client))
    response = client.post(url, content=b'{"count": 1}', headers={"Content-Type": content_type})
    assert response.status_code == 415
    accepted = response.json()["accepted"]
    assert accepted == ["CheckInItemsToInventory", "RemoveItemsFromInventory"]


@pytest.mark.parametrize("count", [0, -1, '"abc"', "true", "1.5"])
def test_counts_must_be_positive_integers(client: httpx.Client, count: object) -> None:
    url = item_url(create(client))
    response = client.post(
        url,
        content=f'{{"count": {count}}}'.encode(),
        headers={"Content-Type": "application/json; domain-model=CheckInItemsToInventory"},
    )
    assert response.status_code == 422


def test_business_rule_conflicts_are_409(client: httpx.Client) -> None:
    created = create(client)
    url = item_url(created)
    stock(client, url, "CheckInItemsToInventory", 5)
    too_many = stock(client, url, "RemoveItemsFromInventory", 6)
    assert too_many.status_code == 409 and "only 5 in stock" in too_many.json()["detail"]
    client.delete(url)
    assert stock(client, url, "CheckInItemsToInventory", 1).status_code == 409
    assert client.put(url, json={"newName": "x"}).status_code == 409


def test_preconditions_come_before_business_rules(client: httpx.Client) -> None:
    created = create(client)
    etag = read(client, created).headers["ETag"]
    url = item_url(created)
    client.delete(url)
    assert client.put(url, json={"newName": "x"}, headers={"If-Match": etag}).status_code == 412
