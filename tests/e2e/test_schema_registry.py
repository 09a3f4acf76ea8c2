"""The event schema registry and the AsyncAPI document over real HTTP, in every layout the
contract runs in (`up` on SQLite and PostgreSQL, separate processes, Envoy), and behind keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventgate.examples import inventory
from tests.e2e.conftest import create, read
from tests.e2e.server import Deployment, Server, keyed_server
from tests.e2e.test_schemas_cli import copy_of_inventory, edit, schemas
from tests.nats import NatsServer

RELEASED = Path(inventory.__file__).with_name("event-schemas.json")


def test_the_index_lists_every_event_type_and_links_its_versions(client: httpx.Client) -> None:
    index = client.get("/api/schemas")
    assert index.status_code == 200 and index.headers["content-type"] == "application/json"
    types = {t["type"]: t for t in index.json()["types"]}
    assert set(types) == {
        "InventoryItemCreated", "InventoryItemRenamed", "InventoryItemDeactivated",
        "ItemsCheckedInToInventory", "ItemsRemovedFromInventory",
    }  # fmt: skip
    renamed = types["InventoryItemRenamed"]
    assert renamed["currentVersion"] == 1 and renamed["href"] == "/api/schemas/InventoryItemRenamed"
    assert renamed["versions"] == [{"version": 1, "href": "/api/schemas/InventoryItemRenamed/1"}]
    assert client.get(renamed["href"]).json() == renamed


def test_a_schema_describes_the_data_that_the_event_stream_carries(
    server: Server | Deployment, client: httpx.Client
) -> None:
    schema = client.get("/api/schemas/InventoryItemRenamed/1")
    assert schema.status_code == 200
    assert schema.headers["content-type"] == "application/schema+json"
    body = schema.json()
    assert body["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert body["properties"] == {"id": {"type": "string"}, "newName": {"type": "string"}}
    assert body["required"] == ["id", "newName"]

    accepted = create(client, "described")
    assert client.put(accepted.headers["Location"], json={"newName": "renamed"}).status_code == 202
    assert read(client, accepted).status_code == 200
    item = accepted.headers["Location"].rsplit("/", 1)[1]
    with client.stream("GET", f"/api/events?stream={item}&type=InventoryItemRenamed") as events:
        data = next(line for line in events.iter_lines() if line.startswith("data: "))
    assert sorted(httpx.Response(200, content=data[6:]).json()["data"]) == sorted(body["required"])


def test_schemas_carry_an_etag_and_answer_304(client: httpx.Client) -> None:
    first = client.get("/api/schemas/InventoryItemCreated/1")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "max-age=0, private"
    again = client.get("/api/schemas/InventoryItemCreated/1", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    index = client.get("/api/schemas")
    assert (
        client.get("/api/schemas", headers={"If-None-Match": index.headers["etag"]}).status_code
        == 304
    )


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/schemas/NoSuchEvent", "no event type NoSuchEvent"),
        ("/api/schemas/NoSuchEvent/1", "no schema version 1 of NoSuchEvent"),
        ("/api/schemas/InventoryItemCreated/2", "no schema version 2 of InventoryItemCreated"),
        ("/api/schemas/InventoryItemCreated/one", "no schema version one of"),
    ],
)
def test_unknown_types_and_versions_are_404_problems(
    client: httpx.Client, path: str, detail: str
) -> None:
    missing = client.get(path)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert detail in missing.json()["detail"]


def test_writes_to_the_registry_are_405(client: httpx.Client) -> None:
    refused = client.post("/api/schemas/InventoryItemCreated/1", json={})
    assert refused.status_code == 405 and "GET" in refused.headers["allow"]


def test_the_openapi_and_asyncapi_documents_describe_the_registry_and_the_channels(
    client: httpx.Client,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/schemas", "/api/schemas/{type}", "/api/schemas/{type}/{version}"} <= set(paths)
    document = client.get("/asyncapi.json")
    assert document.status_code == 200
    asyncapi = document.json()
    assert asyncapi["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert {"/api/events", "/api/inventory-items/{id}/events", "/api/events/ws", None} == addresses
    created = asyncapi["components"]["schemas"]["InventoryItemCreated"]
    assert (
        created["properties"]
        == client.get("/api/schemas/InventoryItemCreated/1").json()["properties"]
    )


KEYS = {"reader": "reader-key", "writer": "writer-key"}
CONFIG = """
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = keyed_server(tmp_path_factory.mktemp("secured"), CONFIG, KEYS).start()
    yield server
    server.stop()


def test_the_registry_needs_the_read_scope_and_asyncapi_no_key(secured: Server) -> None:
    with secured.client() as client:
        assert client.get("/api/schemas").status_code == 401
        key = {"X-API-Key": KEYS["reader"]}
        assert client.get("/api/schemas/InventoryItemCreated/1", headers=key).status_code == 200
        document = client.get("/asyncapi.json").json()
        assert set(document["components"]["securitySchemes"]) == {"apiKey", "bearer", "apiKeyQuery"}


def test_older_versions_come_from_the_released_file(tmp_path: Path) -> None:
    """A type moved to version 2 with an upcaster: the registry serves version 1 from the
    released file and version 2 from the code."""
    package = copy_of_inventory(tmp_path)
    renamed = "class InventoryItemRenamed(Event):\n"
    bumped = f"{renamed}    schema_version: ClassVar[int] = 2\n    id: str\n    title: str\n"
    edit(package / "domain.py", f"{renamed}    id: str\n    new_name: str\n", bumped)
    edit(package / "domain.py", "case InventoryItemRenamed(new_name=new_name)",
         "case InventoryItemRenamed(title=new_name)")  # fmt: skip
    edit(package / "__init__.py", "app = inventory_app()\n", """app = inventory_app()
app.upcasters.register("InventoryItemRenamed", 1, lambda d: {"id": d["id"], "title": d["newName"]})
""")  # fmt: skip
    assert schemas(tmp_path, "release", "--app", "shop:app").returncode == 0
    server = Server(tmp_path / "data", "--app", "shop:app", cwd=tmp_path).start()
    try:
        with server.client() as client:
            listed = client.get("/api/schemas/InventoryItemRenamed").json()
            assert listed["currentVersion"] == 2
            assert [v["version"] for v in listed["versions"]] == [1, 2]
            old = client.get("/api/schemas/InventoryItemRenamed/1").json()
            new = client.get("/api/schemas/InventoryItemRenamed/2").json()
            assert list(old["properties"]) == ["id", "newName"]
            assert list(new["properties"]) == ["id", "title"]
    finally:
        server.stop()


def test_with_a_broker_the_asyncapi_document_has_its_subjects(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    server = Server(tmp_path / "data", "--broker", nats_server.url).start()
    try:
        with server.client() as client:
            document = client.get("/asyncapi.json").json()
    finally:
        server.stop()
    assert document["servers"]["nats"]["host"] == nats_server.url.removeprefix("nats://")
    created = document["channels"]["nats.InventoryItemCreated"]
    assert created["address"] == "eventgate.inventory.{partition}.InventoryItemCreated"
