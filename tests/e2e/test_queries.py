"""Query API rows of the contract: representations, ETags, conditional GET, HEAD, OPTIONS."""

from __future__ import annotations

import base64
import re
import uuid

import httpx
import pytest

from tests.e2e.conftest import create, embedded_gateway_only, item_url, read, stock
from tests.e2e.server import Server

FIVE_LEVELS = "version=1; format=application%2Fjson; schema=application%2Fjson; is-text=true"
NO_DOCS = (
    "the Envoy export answers /openapi.json itself but leaves out the Swagger UI pages at /docs"
    " (1.5 MB of assets the edge has no files of: docs/envoy.md)"
)


def test_item_details_carry_5lmt_type_etag_and_cache_headers(client: httpx.Client) -> None:
    created = create(client, "details")
    response = read(client, created)
    assert response.status_code == 200
    assert response.json() == {
        "id": created.json()["id"],
        "name": "details",
        "currentCount": 0,
        "version": 1,
    }
    assert response.headers["Content-Type"] == (
        f"application/json; charset=utf-8; domain-model=InventoryItemDetails; {FIVE_LEVELS}"
    )
    assert response.headers["Cache-Control"] == "max-age=0, private"
    assert response.headers["Vary"] == "Accept"
    assert response.headers["Consistency-Status"] == "current"


def test_item_etags_are_opaque_stable_per_version_and_per_representation(
    client: httpx.Client,
) -> None:
    created = create(client)
    first = read(client, created).headers["ETag"]
    assert read(client, created).headers["ETag"] == first  # deterministic
    opaque = first.strip('"')
    raw = base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4))
    assert b"application" not in raw and len(raw) >= 16  # the plaintext does not show
    xml = read(client, created, Accept="application/xml").headers["ETag"]
    assert xml != first
    moved = stock(client, item_url(created), "CheckInItemsToInventory", 1)
    assert read(client, moved).headers["ETag"] not in {first, xml}


def test_if_none_match_gives_304_with_the_etag(client: httpx.Client) -> None:
    created = create(client)
    etag = read(client, created).headers["ETag"]
    response = client.get(item_url(created), headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.headers["ETag"] == etag
    assert response.content == b""
    listing = client.get("/api/inventory-items")
    again = client.get("/api/inventory-items", headers={"If-None-Match": listing.headers["ETag"]})
    assert again.status_code == 304


def test_unknown_items_are_404_and_deactivated_ones_410(client: httpx.Client) -> None:
    assert client.get(f"/api/inventory-items/{uuid.uuid4()}").status_code == 404
    created = create(client)
    gone = client.delete(item_url(created))
    response = read(client, gone)
    assert response.status_code == 410
    assert response.headers["Content-Type"] == "application/problem+json"


def test_xml_is_served_when_accept_prefers_it(client: httpx.Client) -> None:
    created = create(client, "xml <&> item")
    response = read(client, created, Accept="application/json;q=0.5, application/xml")
    assert response.headers["Content-Type"].startswith("application/xml; charset=utf-8;")
    assert "format=application%2Fxml" in response.headers["Content-Type"]
    assert b"<InventoryItemDetails>" in response.content
    assert b"<name>xml &lt;&amp;&gt; item</name>" in response.content
    assert b"<currentCount>0</currentCount>" in response.content


def test_an_unacceptable_accept_is_406(client: httpx.Client) -> None:
    response = client.get("/api/inventory-items", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert client.get("/api/inventory-items", headers={"Accept": "*/*"}).status_code == 200


def test_head_gives_the_get_headers_without_a_body(client: httpx.Client) -> None:
    created = create(client)
    get = read(client, created)
    head = client.head(item_url(created))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    listing = client.head("/api/inventory-items")
    assert listing.status_code == 200 and "ETag" in listing.headers


def test_options_lists_the_methods(client: httpx.Client) -> None:
    item = client.options(f"/api/inventory-items/{uuid.uuid4()}")
    assert item.status_code == 200
    assert set(item.json()) == {"GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE"}
    assert set(item.headers["Allow"].split(", ")) == set(item.json())
    assert "domain-model=String%5B%5D" in item.headers["Content-Type"]
    collection = client.options("/api/inventory-items")
    assert set(collection.json()) == {"GET", "HEAD", "OPTIONS", "POST"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/inventory-items"),
        ("DELETE", "/api/inventory-items"),
        ("PATCH", "/api/inventory-items/x"),
    ],
)
def test_other_methods_are_405_with_allow_and_a_json_message(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.json()["message"] == "Http Method not supported"


def test_the_list_pages_by_name_then_id_and_searches_names(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    last = None
    for name in ["b", "a", "c", "a"]:
        last = create(client, f"{tag}-{name}")
    assert last is not None
    token = last.headers["Consistency-Token"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": tag, "limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get(
            "/api/inventory-items", params=params, headers={"Consistency-Token": token}
        )
        body = page.json()
        assert len(body["items"]) <= 3
        seen += [item["name"] for item in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [f"{tag}-a", f"{tag}-a", f"{tag}-b", f"{tag}-c"]


def test_a_search_treats_wildcards_literally(client: httpx.Client) -> None:
    created = create(client, "100% cotton_shirt")
    token = created.headers["Consistency-Token"]
    found = client.get(
        "/api/inventory-items", params={"q": "0% c"}, headers={"Consistency-Token": token}
    )
    assert [i["name"] for i in found.json()["items"]] == ["100% cotton_shirt"]
    assert client.get("/api/inventory-items", params={"q": "_%_%_%_%_%_%_%_"}).json()["items"] == []


def test_deactivated_items_leave_the_list(client: httpx.Client) -> None:
    name = f"gone-{uuid.uuid4().hex[:8]}"
    created = create(client, name)
    gone = client.delete(item_url(created))
    token = gone.headers["Consistency-Token"]
    listing = client.get(
        "/api/inventory-items", params={"q": name}, headers={"Consistency-Token": token}
    )
    assert listing.json() == {"items": [], "next": None}


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"cursor": "!!"}, {"q": "x" * 201}]
)
def test_bad_query_parameters_are_400(client: httpx.Client, params: dict[str, str]) -> None:
    assert client.get("/api/inventory-items", params=params).status_code == 400


def test_a_malformed_consistency_token_is_400(client: httpx.Client) -> None:
    response = client.get("/api/inventory-items", headers={"Consistency-Token": "nope"})
    assert response.status_code == 400


def test_a_token_from_the_future_answers_stale_after_the_bound(client: httpx.Client) -> None:
    future = base64.urlsafe_b64encode(b"eg1:4611686018427387904").rstrip(b"=").decode()
    response = client.get("/api/inventory-items", headers={"Consistency-Token": future})
    assert response.status_code == 200
    assert response.headers["Consistency-Status"] == "stale"


def test_the_openapi_document_is_served(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/api/inventory-items/{id}" in document["paths"]


def test_the_docs_page_is_served(server: Server, client: httpx.Client) -> None:
    embedded_gateway_only(server, NO_DOCS)
    assert "swagger-ui" in client.get("/docs").text


def test_the_docs_page_loads_its_assets_from_this_server_not_a_cdn(
    server: Server, client: httpx.Client
) -> None:
    embedded_gateway_only(server, NO_DOCS)
    page = client.get("/docs").text
    assert "http://" not in page and "https://" not in page
    assets = re.findall(r'(?:href|src)="(/docs/[^"]+)"', page)
    assert len(assets) == 3
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and len(response.content) > 1000, asset
    assert client.get("/docs/nothing.js").status_code == 404
