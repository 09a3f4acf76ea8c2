"""The web console at /console in a real browser (headless Chromium driven by Playwright)
against a real `eventgate up`: an item created from the page shows in the list and in the
live event stream, a rename with a stale ETag shows the 412 and reloads, a function's dead
letter is replayed from the page, the commands it sent show their status; with auth on,
only an admin key can use it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventgate.console import CONTENT_SECURITY_POLICY
from tests.e2e.server import Deployment, EnvoyDeployment, Server, keyed_config, keyed_server
from tests.postgres import database_for

WAIT_MS = 15_000
HOSTILE = '<img src=x onerror="window.pwned=1"> widget'  # event data is untrusted
KEYS = {"admin": "console-admin-key", "reader": "console-read-key"}
CONFIG = """
[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
"""
CONSOLE_HEADERS = {  # what eventgate's gateway sends with the console's files (console/pages.py)
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security" in m.text else None)
    yield page
    context.close()
    assert errors == []  # no script error and nothing the Content-Security-Policy refused


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", "--functions", "tests.e2e.functions_for_up").start()
    yield server
    server.stop()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def create_from_the_page(page: Any, name: str) -> str:
    """Create an item with the console's form; its id, from the details it then opens."""
    page.fill("#CreateInventoryItem-name", name)
    page.get_by_role("button", name="CreateInventoryItem", exact=True).click()
    details = page.locator("#details dl")
    expect(details).to_contain_text(name, timeout=WAIT_MS)
    found = re.search(r"id([0-9a-f-]{36})", details.inner_text().replace("\n", ""))
    assert found is not None
    return found.group(1)


def rename_from_the_page(page: Any, name: str) -> None:
    page.fill("#RenameInventoryItem-newName", name)
    page.get_by_role("button", name="RenameInventoryItem", exact=True).click()


def test_an_operator_follows_an_item_through_the_console(up: Server, page: Any) -> None:
    page.goto(f"{up.url}/console")
    expect(page.locator("#key-status")).to_have_text("no key needed (auth is off)")
    item = create_from_the_page(page, HOSTILE)

    expect(page.locator("#list table")).to_contain_text(HOSTILE, timeout=WAIT_MS)
    created = page.locator("#event-list li", has_text="InventoryItemCreated")
    expect(created.filter(has_text=item)).to_have_count(1, timeout=WAIT_MS)
    sent = page.locator("#command-list tr", has_text="CreateInventoryItem")
    expect(sent).to_contain_text("applied", timeout=WAIT_MS)
    expect(sent).to_contain_text("succeeded", timeout=WAIT_MS)  # the audit trail ran
    expect(page.locator("#projection-list")).to_contain_text("inventory_item_details")
    page.locator("#event-list li", has_text=item).get_by_role("button").click()
    expect(page.locator("#event-list pre")).to_contain_text('"name": "<img src=x')
    assert page.locator("main img").count() == 0  # the markup in the data stayed text
    assert page.evaluate("window.pwned") is None

    with up.client() as client:  # someone else renames it after the page read it
        etag = client.get(f"/api/inventory-items/{item}").headers["ETag"]
        renamed = client.put(f"/api/inventory-items/{item}", json={"newName": "renamed elsewhere"},
                             headers={"If-Match": etag, "Prefer": "wait=5"})  # fmt: skip
        assert renamed.status_code == 200, renamed.text
    rename_from_the_page(page, "renamed in the console")
    problem = page.locator("#item-problem")
    expect(problem).to_contain_text("changed since you read it", timeout=WAIT_MS)
    expect(problem).to_contain_text("412")
    problem.get_by_role("button", name="Reload").click()
    expect(page.locator("#details dl")).to_contain_text("renamed elsewhere", timeout=WAIT_MS)
    rename_from_the_page(page, "renamed in the console")
    expect(page.locator("#details dl")).to_contain_text("renamed in the console", timeout=WAIT_MS)

    (up.data / "broken").touch()  # tests/e2e/functions_for_up.py: rename_hook now fails
    rename_from_the_page(page, "breaks the hook")
    letters = page.locator("#dead-letter-list tr", has_text="rename_hook")
    expect(letters).to_have_count(1, timeout=WAIT_MS)
    failed = page.locator("#command-list tr", has_text="RenameInventoryItem").first
    expect(failed).to_contain_text("failed", timeout=WAIT_MS)
    letter = letters.locator("td").first.inner_text()
    page.get_by_role("button", name=f"Show dead letter {letter}").click()
    expect(page.locator("#dead-letter-details")).to_contain_text("is down")

    (up.data / "broken").unlink()
    page.get_by_role("button", name=f"Replay dead letter {letter}").click()
    expect(page.locator("#dead-letter-list")).to_have_text("No dead letters.", timeout=WAIT_MS)
    with up.client() as client:
        assert client.get("/admin/dead-letters").json() == {"dead_letters": []}
        [hook] = [f for f in client.get("/admin/functions").json()["functions"]
                  if f["name"] == "rename_hook"]  # fmt: skip
    assert hook["dead_letters"] == 0 and hook["failures"] >= 2


def test_every_command_of_the_inventory_works_from_the_page(up: Server, page: Any) -> None:
    page.goto(f"{up.url}/console")
    create_from_the_page(page, "stocked widget")
    details, problem = page.locator("#details dl"), page.locator("#item-problem")
    stock_from_the_page(page, "CheckInItemsToInventory", 5)
    expect(details).to_contain_text(re.compile(r"currentCount5(?!\d)"), timeout=WAIT_MS)
    stock_from_the_page(page, "RemoveItemsFromInventory", 10)
    expect(problem).to_contain_text("409", timeout=WAIT_MS)
    expect(problem).to_contain_text("only 5 in stock")
    stock_from_the_page(page, "RemoveItemsFromInventory", 2)
    expect(details).to_contain_text(re.compile(r"currentCount3(?!\d)"), timeout=WAIT_MS)
    page.get_by_role("button", name="DeactivateInventoryItem (DELETE)").click()
    expect(page.locator("#details")).to_contain_text("410", timeout=WAIT_MS)
    expect(page.locator("#list")).to_have_text("No items.", timeout=WAIT_MS)
    sent = page.locator("#command-list tbody tr")
    expect(sent).to_have_count(4, timeout=WAIT_MS)  # the refused removal sent no command
    for command in ("Create", "CheckIn", "RemoveItems", "Deactivate"):
        expect(sent.filter(has_text=command).first).to_contain_text("applied", timeout=WAIT_MS)


def stock_from_the_page(page: Any, model: str, count: int) -> None:
    page.fill(f"#{model}-count", str(count))
    page.get_by_role("button", name=model, exact=True).click()


def test_the_console_and_its_calls_need_an_admin_key_when_auth_is_on(
    tmp_path: Path, page: Any
) -> None:
    server = keyed_server(tmp_path, CONFIG, KEYS).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            served = client.get("/console")  # the page holds no data: no key needed
            assert served.status_code == 200
            assert "script-src 'self'" in served.headers["Content-Security-Policy"]
            for path in ("/admin/projections", "/admin/functions", "/admin/dead-letters"):
                assert client.get(path).status_code == 401
                reader = client.get(path, headers={"X-API-Key": KEYS["reader"]})
                assert reader.status_code == 403, path
                admin = client.get(path, headers={"X-API-Key": KEYS["admin"]})
                assert admin.status_code == 200, path

        page.goto(f"{server.url}/console")
        status = page.locator("#key-status")
        expect(status).to_have_text("enter an API key with the admin scope")
        page.fill("#key", KEYS["reader"])
        page.get_by_role("button", name="Use key").click()
        expect(status).to_have_text("this key does not hold the admin scope")
        expect(page.locator("#projection-list")).to_contain_text("403")

        page.fill("#key", KEYS["admin"])
        page.get_by_role("button", name="Use key").click()
        expect(status).to_have_text("key accepted (admin)")
        item = create_from_the_page(page, "keyed widget")
        expect(page.locator("#list table")).to_contain_text("keyed widget", timeout=WAIT_MS)
        created = page.locator("#event-list li", has_text=item)  # SSE with ?api_key=
        expect(created).to_contain_text("InventoryItemCreated", timeout=WAIT_MS)
        assert page.evaluate("sessionStorage.getItem('eventgate.console.key')") == KEYS["admin"]
    finally:
        server.stop()


def test_serve_gateway_and_envoy_serve_the_console_and_route_its_admin_calls(
    tmp_path: Path, postgres_dsn: str, page: Any
) -> None:
    """The components as separate processes on PostgreSQL: `serve gateway` serves the page
    and its calls reach the command service's admin API. Envoy (exported config, with keys)
    routes the page's files to the command services without a key, with the same headers,
    and its calls with the key: a read key is refused, the admin key fills the panels."""
    with ThreadPoolExecutor(1) as thread:  # Playwright runs a loop in this one
        url = thread.submit(asyncio.run, database_for(postgres_dsn, str(tmp_path), "c")).result()
    deployment = Deployment(tmp_path / "data", "--database-url", url).start()
    config = keyed_config(tmp_path, CONFIG, KEYS)
    envoy = EnvoyDeployment(tmp_path / "envoy-data", "--database-url", url, config=config,
                            keys=KEYS, instances=1)  # fmt: skip
    try:
        page.goto(f"{deployment.url}/console")
        create_from_the_page(page, "separate widget")
        expect(page.locator("#list table")).to_contain_text("separate widget", timeout=WAIT_MS)
        expect(page.locator("#projection-list")).to_contain_text("inventory_item_list")
        served = httpx.get(f"{deployment.url}/console", timeout=10)
        assert {name: served.headers[name] for name in CONSOLE_HEADERS} == CONSOLE_HEADERS

        envoy.start()
        with httpx.Client(base_url=envoy.url, timeout=10) as client:
            for path in ("/console", "/console/", "/console/main.js", "/console/console.css"):
                served = client.get(path)  # no key: the files hold no data
                assert served.status_code == 200, (path, served.text)
                assert {name: served.headers[name] for name in CONSOLE_HEADERS} == CONSOLE_HEADERS
            assert client.head("/console").status_code == 200
            assert client.get("/console/nope.js").status_code == 404
            assert client.post("/console").status_code == 401  # not a file: the key first
            assert client.get("/admin/projections").status_code == 401
            reader = client.get("/admin/projections", headers={"X-API-Key": KEYS["reader"]})
            assert reader.status_code == 403
        service = envoy.service_urls("commands")[0]  # the files are behind the token there
        assert httpx.get(f"{service}/console", timeout=10).status_code == 401

        page.goto(f"{envoy.url}/console")
        status = page.locator("#key-status")
        expect(status).to_have_text("enter an API key with the admin scope")
        page.fill("#key", KEYS["reader"])
        page.get_by_role("button", name="Use key").click()
        expect(status).to_have_text("this key does not hold the admin scope", timeout=WAIT_MS)
        expect(page.locator("#projection-list")).to_contain_text("403", timeout=WAIT_MS)
        page.fill("#key", KEYS["admin"])
        page.get_by_role("button", name="Use key").click()
        expect(status).to_have_text("key accepted (admin)", timeout=WAIT_MS)
        projections = page.locator("#projection-list")
        expect(projections).to_contain_text("inventory_item_details", timeout=WAIT_MS)
        expect(page.locator("#list table")).to_contain_text("separate widget", timeout=WAIT_MS)
    finally:
        envoy.stop()
        deployment.stop()


def test_any_app_gets_its_resources_on_the_page_from_its_openapi(tmp_path: Path, page: Any) -> None:
    """The suite's own taskboard app: its two collections, their create forms, a PUT and
    a POST without fields, each from its OpenAPI document."""
    server = Server(tmp_path / "data", "--app", "tests.e2e.apps.taskboard:app").start()
    try:
        page.goto(f"{server.url}/console")
        options = page.locator("#resource option")
        expect(options).to_have_text(["/api/boards", "/api/tasks"])
        page.fill("#OpenBoard-title", "Sprint 1")
        page.get_by_role("button", name="OpenBoard", exact=True).click()
        details = page.locator("#details dl")
        expect(details).to_contain_text("Sprint 1", timeout=WAIT_MS)
        board = re.search(r"id([0-9a-f-]{36})", details.inner_text().replace("\n", ""))
        assert board is not None
        page.fill("#RetitleBoard-title", "Sprint 2")
        page.get_by_role("button", name="RetitleBoard", exact=True).click()
        expect(details).to_contain_text("Sprint 2", timeout=WAIT_MS)

        page.select_option("#resource", "/api/tasks")
        page.fill("#AddTask-boardId", board.group(1))
        page.fill("#AddTask-title", "write the console")
        page.fill("#AddTask-points", "3")
        page.get_by_role("button", name="AddTask", exact=True).click()
        expect(details).to_contain_text(re.compile(r"points3(?!\d)"), timeout=WAIT_MS)
        page.get_by_role("button", name="CompleteTask", exact=True).click()
        expect(details).to_contain_text(re.compile(r"donetrue"), timeout=WAIT_MS)
        expect(page.locator("#list table")).to_contain_text("write the console")
    finally:
        server.stop()
