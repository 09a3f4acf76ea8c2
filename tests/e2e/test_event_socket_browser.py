"""A real browser's WebSocket (headless Chromium, driven by Playwright) on the event stream:
it authenticates with `?api_key=`, gets the subprotocol, its bad message is answered with a
problem on the same connection; when the server restarts, the page reconnects with `after`
set to the last sequence it saw and gets exactly what came after. Without a key the
handshake is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import create, item_url
from tests.e2e.server import Server, keyed_server
from tests.e2e.test_event_socket import CONFIG, KEYS
from tests.postgres import free_port

FOLLOW = """
(url) => {
  window.seen = []; window.errors = []; window.closes = []; window.opened = 0;
  let last = 0;
  const open = () => {
    const socket = new WebSocket(url, ["eventgate.events.v1"]);
    socket.onopen = () => {
      window.opened += 1;
      window.protocol = socket.protocol;
      socket.send(JSON.stringify({type: "subscribe", subscription: "created",
                                  types: ["InventoryItemCreated"], after: last}));
      socket.send("not json");
    };
    socket.onmessage = (m) => {
      const message = JSON.parse(m.data);
      if (message.type === "event") {
        last = message.event.sequence;
        window.seen.push({subject: message.event.subject, sequence: message.event.sequence});
      } else if (message.type === "error") {
        window.errors.push(message.problem.status);
      }
    };
    socket.onclose = (c) => {
      window.closes.push(c.code);
      if (window.closes.length < 60) setTimeout(open, 500);
    };
  };
  open();
}
"""
REFUSED = """
(url) => new Promise((resolve) => {
  const socket = new WebSocket(url, ["eventgate.events.v1"]);
  let opened = false;
  socket.onopen = () => { opened = true; };
  socket.onclose = (c) => resolve({opened, code: c.code});
})
"""


def test_a_browser_subscribes_with_its_key_and_resumes_after_a_restart(
    chromium: Any,
    tmp_path: Path,
) -> None:
    port = free_port()

    def start() -> Server:
        server = keyed_server(tmp_path, CONFIG, KEYS)
        server.args = (*server.args, "--port", str(port))
        return server.start()

    server = start()
    page = chromium.new_page()
    socket_url = f"ws://127.0.0.1:{port}/api/events/ws"
    try:
        with server.client(headers={"X-API-Key": KEYS["writer"]}) as client:
            first = item_url(create(client, "seen live")).rsplit("/", 1)[1]
        page.goto(f"{server.url}/openapi.json")  # any page of the origin (needs no key)
        assert page.evaluate(REFUSED, socket_url) == {"opened": False, "code": 1006}
        page.evaluate(FOLLOW, f"{socket_url}?api_key={KEYS['reader']}")
        page.wait_for_function("window.seen.length === 1 && window.errors.length === 1",
                               timeout=15_000)  # fmt: skip
        assert page.evaluate("[window.protocol, window.errors]") == ["eventgate.events.v1", [400]]

        server.stop()  # the page's socket is closed; it reconnects with `after` by itself
        server = start()
        with server.client(headers={"X-API-Key": KEYS["writer"]}) as client:
            second = item_url(create(client, "seen after the restart")).rsplit("/", 1)[1]
        page.wait_for_function("window.seen.length >= 2 && window.opened >= 2", timeout=30_000)
        page.wait_for_timeout(500)  # a repeat of the first event, if any, would arrive now
        seen, closes = page.evaluate("[window.seen, window.closes]")
    finally:
        page.close()
        server.stop()
    assert [s["subject"] for s in seen] == [first, second]
    assert int(seen[0]["sequence"]) < int(seen[1]["sequence"])
    assert closes[0] == 1012  # service restart: uvicorn's close when the server stops
