"""Any app gets the whole contract: the suite's own taskboard app served by `up --app`."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.server import ROOT, Server

APP = "tests.e2e.apps.taskboard:app"
MODEL = "application/json; domain-model={}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("taskboard"), "--app", APP).start()
    yield server
    server.stop()


def board(client: httpx.Client, title: str = "Sprint") -> httpx.Response:
    response = client.post("/api/boards", json={"title": title})
    assert response.status_code == 202, response.text
    return response


def read(client: httpx.Client, accepted: httpx.Response, **headers: str) -> httpx.Response:
    token = accepted.headers["Consistency-Token"]
    return client.get(accepted.headers["Location"], headers={"Consistency-Token": token, **headers})


def test_the_banner_names_the_app(server: Server) -> None:
    assert "app taskboard" in server.banner


def test_create_then_read_your_write_with_an_opaque_etag(client: httpx.Client) -> None:
    created = board(client, "Roadmap")
    assert created.headers["Location"] == f"/api/boards/{created.json()['id']}"
    response = read(client, created)
    assert response.status_code == 200 and response.headers["Consistency-Status"] == "current"
    assert response.json() == {"id": created.json()["id"], "title": "Roadmap", "version": 1}
    assert "domain-model=Boards" in response.headers["Content-Type"]
    assert response.headers["ETag"].startswith('"') and response.headers["ETag"].strip('"') != "1"
    again = client.get(
        created.headers["Location"], headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304


def test_if_match_guards_updates_and_stale_tags_get_412(client: httpx.Client) -> None:
    created = board(client)
    etag = read(client, created).headers["ETag"]
    url = created.headers["Location"]
    renamed = client.put(url, json={"title": "Renamed"}, headers={"If-Match": etag})
    assert renamed.status_code == 202
    stale = client.put(url, json={"title": "Again"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.headers["Content-Type"] == "application/problem+json"


def test_logical_delete_is_410_and_hidden_from_the_list(client: httpx.Client) -> None:
    created = board(client, "zz-archived")
    archived = client.delete(created.headers["Location"])
    assert archived.status_code == 202
    assert read(client, archived).status_code == 410
    listing = client.get(
        "/api/boards",
        params={"q": "zz-archived"},
        headers={"Consistency-Token": archived.headers["Consistency-Token"]},
    )
    assert listing.json() == {"items": [], "next": None}
    assert client.put(created.headers["Location"], json={"title": "x"}).status_code == 409


def test_several_commands_on_one_method_are_told_apart_by_domain_model(
    client: httpx.Client,
) -> None:
    owner = board(client).json()["id"]
    task = client.post("/api/tasks", json={"boardId": owner, "title": "write", "points": "3"})
    assert task.status_code == 202
    url = task.headers["Location"]
    missing = client.post(url, json={"points": 5})
    assert missing.status_code == 415
    assert missing.json()["accepted"] == ["EstimateTask", "CompleteTask"]
    estimated = client.post(
        url, json={"points": 5}, headers={"Content-Type": MODEL.format("EstimateTask")}
    )
    assert estimated.status_code == 202
    done = client.post(url, content=b"{}", headers={"Content-Type": MODEL.format("CompleteTask")})
    assert done.status_code == 202
    row = read(client, done).json()
    assert row == {
        "id": task.json()["id"],
        "boardId": owner,
        "title": "write",
        "points": 5,
        "done": True,
        "version": 3,
    }
    refused = client.post(
        url, json={"points": 1}, headers={"Content-Type": MODEL.format("EstimateTaskCommand")}
    )
    assert refused.status_code == 409


def test_invalid_values_are_422_naming_the_field_and_malformed_bodies_400(
    client: httpx.Client,
) -> None:
    owner = board(client).json()["id"]
    too_many = client.post("/api/tasks", json={"boardId": owner, "title": "t", "points": 101})
    assert too_many.status_code == 422 and "$.points" in too_many.json()["detail"]
    missing = client.post("/api/tasks", json={"title": "t"})
    assert missing.status_code == 422 and "boardId" in missing.json()["detail"]
    assert (
        client.post(
            "/api/tasks", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        client.post("/api/tasks", json={"boardId": owner, "title": "t", "id": "x"}).status_code
        == 422
    )


def test_hostile_text_is_refused_with_a_clear_reason(client: httpx.Client) -> None:
    json_type = {"Content-Type": "application/json"}
    not_utf8 = client.post("/api/boards", content=b'{"title":"\xff\xfe"}', headers=json_type)
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["detail"]
    control = client.post("/api/boards", json={"title": "a\u0000b"})
    assert control.status_code == 422 and "$.title" in control.json()["detail"]
    surrogate = client.post("/api/boards", content=b'{"title":"a\\ud800b"}', headers=json_type)
    assert surrogate.status_code == 400 and "surrogate" in surrogate.json()["detail"]
    huge = client.post("/api/tasks", json={"boardId": "b", "title": "t", "points": 10**33})
    assert huge.status_code == 422


def test_lists_page_filter_and_negotiate_xml(client: httpx.Client) -> None:
    owner = board(client).json()["id"]
    last = None
    for n in range(3):
        last = client.post("/api/tasks", json={"boardId": owner, "title": f"task {n}"})
    assert last is not None
    token = {"Consistency-Token": last.headers["Consistency-Token"]}
    first = client.get("/api/tasks", params={"boardId": owner, "limit": 2}, headers=token)
    assert [t["title"] for t in first.json()["items"]] == ["task 0", "task 1"]
    rest = client.get("/api/tasks", params={"boardId": owner, "cursor": first.json()["next"]})
    assert [t["title"] for t in rest.json()["items"]] == ["task 2"]
    assert rest.json()["next"] is None
    assert client.get("/api/tasks", params={"boardId": owner, "done": "true"}).json()["items"] == []
    assert client.get("/api/tasks", params={"done": "maybe"}).status_code == 400
    xml = client.get("/api/tasks", params={"boardId": owner}, headers={"Accept": "application/xml"})
    assert xml.headers["Content-Type"].startswith("application/xml")
    assert len(ET.fromstring(xml.content).findall("./items/item")) == 3
    assert client.get("/api/tasks", headers={"Accept": "text/csv"}).status_code == 406


def test_methods_options_head_and_unknown_paths(client: httpx.Client) -> None:
    options = client.options("/api/tasks/x")
    assert options.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.put("/api/tasks/x", json={}).status_code == 405
    assert client.delete("/api/tasks/x").headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert client.head("/api/boards").status_code == 200
    assert client.get(f"/api/tasks/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/inventory-items").status_code == 404  # only the app's resources


def test_idempotency_key_replays_the_first_answer(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/boards", json={"title": "once"}, headers=headers)
    second = client.post("/api/boards", json={"title": "once"}, headers=headers)
    assert second.status_code == 202 and second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"


def test_the_openapi_document_describes_the_declared_resources(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/boards",
        "/api/boards/{id}",
        "/api/tasks",
        "/api/tasks/{id}",
        "/api/commands/{id}",  # eventgate's own, for every app: command status
        "/api/schemas",  # and the event schema registry
        "/api/schemas/{type}",
        "/api/schemas/{type}/{version}",
    }
    add = document["components"]["schemas"]["AddTask"]
    assert add["required"] == ["boardId", "title"]
    content = document["paths"]["/api/tasks/{id}"]["post"]["requestBody"]["content"]
    assert set(content) == {MODEL.format("EstimateTask"), MODEL.format("CompleteTask")}
    filters = {p["name"] for p in document["paths"]["/api/tasks"]["get"]["parameters"]}
    assert filters == {"limit", "cursor", "boardId", "done"}


@pytest.mark.parametrize("named", [True, False])
def test_cli_reads_the_apps_data_named_or_as_up_recorded_it(server: Server, named: bool) -> None:
    command = [sys.executable, "-m", "eventgate.cli", "projections", "status"]
    command += ["--data", str(server.data), *(["--app", APP] if named else [])]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert found.returncode == 0, found.stderr
    assert "boards" in found.stdout and "tasks" in found.stdout
    assert "inventory" not in found.stdout


def test_a_404_after_a_wait_that_did_not_catch_up_says_it_is_stale(client: httpx.Client) -> None:
    future = base64.urlsafe_b64encode(b"eg1:4611686018427387904").rstrip(b"=").decode()
    response = client.get(f"/api/boards/{uuid.uuid4()}", headers={"Consistency-Token": future})
    assert response.status_code == 404 and response.headers["Consistency-Status"] == "stale"


def test_a_command_on_another_kind_of_aggregate_is_404(client: httpx.Client) -> None:
    board_id = board(client).json()["id"]
    estimate = {"Content-Type": MODEL.format("EstimateTask")}
    misdirected = client.post(f"/api/tasks/{board_id}", json={"points": 1}, headers=estimate)
    assert misdirected.status_code == 404


def test_command_status_and_prefer_wait_work_for_this_app_too(client: httpx.Client) -> None:
    waited = client.post("/api/boards", json={"title": "Waited"}, headers={"Prefer": "wait=5"})
    assert waited.status_code == 200 and waited.json()["status"] == "applied"
    status = client.get(waited.json()["links"]["status"])
    assert status.status_code == 200
    found = status.json()
    assert found["status"] == "applied" and found["resources"] == [waited.headers["Location"]]
    assert [e["stream"] for e in found["events"]] == [waited.json()["id"]]
    assert client.get("/asyncapi.json").json()["asyncapi"] == "3.0.0"
