"""A real browser's EventSource (headless Chromium, driven by Playwright) follows the
inventory's events live and, when the server restarts, reconnects by itself with its
Last-Event-ID and gets exactly what came after: nothing lost, nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import create, item_url
from tests.e2e.server import Server, keyed_server
from tests.postgres import free_port

FOLLOW = """
(path) => {
  window.seen = [];
  window.opened = 0;
  const source = new EventSource(path);
  source.onopen = () => { window.opened += 1; };
  source.onmessage = (m) => {
    const event = JSON.parse(m.data);
    window.seen.push({id: m.lastEventId, type: event.type, subject: event.subject});
  };
}
"""


def test_a_browser_follows_events_and_resumes_after_a_restart(
    chromium: Any, tmp_path: Path
) -> None:
    port = free_port()
    server = Server(tmp_path / "data", "--port", str(port)).start()
    page = chromium.new_page()
    try:
        with server.client() as client:
            first = item_url(create(client, "seen live")).rsplit("/", 1)[1]
        page.goto(f"{server.url}/openapi.json")  # any page of the origin
        page.evaluate(FOLLOW, "/api/events?type=InventoryItemCreated")
        page.wait_for_function("window.seen.length === 1", timeout=15_000)

        server.stop()  # the browser's EventSource loses its connection and retries by itself
        server = Server(tmp_path / "data", "--port", str(port)).start()
        with server.client() as client:
            second = item_url(create(client, "seen after the restart")).rsplit("/", 1)[1]
        page.wait_for_function("window.seen.length >= 2 && window.opened >= 2", timeout=20_000)
        page.wait_for_timeout(500)  # a repeat of the first event, if any, would arrive now
        seen = page.evaluate("window.seen")
    finally:
        page.close()
        server.stop()
    assert [s["subject"] for s in seen] == [first, second]
    assert int(seen[0]["id"]) < int(seen[1]["id"])


KEYS = {"reader": "browser-reader-key", "writer": "browser-writer-key"}
CONFIG = """
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]

[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["write"]
"""
WATCH = """
(path) => {
  if (window.source) window.source.close();
  const watched = window.watched = {seen: [], failed: false};
  const source = window.source = new EventSource(path);
  source.onmessage = (m) => { watched.seen.push(JSON.parse(m.data).subject); };
  source.onerror = () => { watched.failed = source.readyState === EventSource.CLOSED; };
}
"""


def test_with_auth_on_a_browser_follows_events_with_its_key_in_api_key_and_not_without(
    chromium: Any, tmp_path: Path
) -> None:
    """EventSource cannot set headers: with the key in `?api_key=` it gets the events; without
    a key it is refused (401), which an EventSource takes as final (it does not retry)."""
    server = keyed_server(tmp_path, CONFIG, KEYS).start()
    page = chromium.new_page()
    try:
        with server.client(headers={"X-API-Key": KEYS["writer"]}) as client:
            item = item_url(create(client, "seen with a key")).rsplit("/", 1)[1]
        page.goto(f"{server.url}/openapi.json")  # any page of the origin (it needs no key)
        page.evaluate(WATCH, f"/api/events?api_key={KEYS['reader']}&stream={item}")
        page.wait_for_function("window.watched.seen.length === 1", timeout=15_000)
        assert page.evaluate("window.watched") == {"seen": [item], "failed": False}

        page.evaluate(WATCH, f"/api/events?stream={item}")
        page.wait_for_function("window.watched.failed", timeout=15_000)
        assert page.evaluate("window.watched.seen") == []
        status = page.evaluate("async (p) => (await fetch(p)).status", f"/api/events?stream={item}")
        assert status == 401
    finally:
        page.close()
        server.stop()
