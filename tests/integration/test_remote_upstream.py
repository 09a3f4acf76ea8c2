"""RemoteUpstream and InternalOnly over real HTTP: uvicorn upstreams on loopback ports, raw
TCP servers that break or stall, and the RemoteUpstream itself served by uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventgate.bootstrap import gateway, service_guard
from eventgate.examples.inventory import inventory_app
from eventgate.gateway.config import Consumer, GatewayConfig
from eventgate.gateway.internal import INTERNAL_HEADER, InternalOnly
from eventgate.gateway.upstream import RemoteUpstream

PROBLEM = "application/problem+json"
TOKEN = "s3cret-internal-token-0123456789"
HOP_BY_HOP = {"keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}  # fmt: skip


# -- the servers ---------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as an upstream received it."""

    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def one(self, name: str) -> str:
        values = self.all(name)
        assert len(values) == 1, (name, self.headers)
        return values[0]

    @property
    def names(self) -> set[str]:
        return {k for k, _ in self.headers}


class Echo:
    """An upstream that records each request and answers 201 with Location, ETag, cookies and
    the request echoed in JSON; `/status/<n>` answers n with a problem body instead."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        seen = Seen(scope["method"], scope["raw_path"], scope["query_string"], headers, body)
        self.requests.append(seen)
        if scope["path"].startswith("/status/"):
            status = int(scope["path"].rsplit("/", 1)[1])
            payload = json.dumps({"status": status, "title": "from upstream"}).encode()
            out = [(b"content-type", PROBLEM.encode())]
        else:
            status = 201
            payload = json.dumps({
                "method": seen.method,
                "path": seen.raw_path.decode("latin-1"),
                "query": seen.query.decode("latin-1"),
                "body": body.decode("latin-1"),
            }).encode()  # fmt: skip
            out = [
                (b"content-type", b"application/json"),
                (b"location", b"/api/things/42"),
                (b"etag", b'"v7"'),
                (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
            ]
        out.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})


class RawServer:
    """A TCP server that reads each request's head and then closes the connection without an
    answer (`silent=False`: the request broke mid-way), or keeps it open saying nothing until
    the client goes away (`silent=True`: the request times out)."""

    def __init__(self, *, silent: bool) -> None:
        self.silent = silent
        self.requests = 0
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.silent:
                await reader.read()  # until the client gives up and closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()


class Net:
    """Everything a test starts, closed in order at its end: clients, RemoteUpstreams, then
    the servers (uvicorn ones stopped together), then the reserved ports."""

    def __init__(self) -> None:
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []
        self._raw: list[RawServer] = []
        self._remotes: list[RemoteUpstream] = []
        self._clients: list[httpx.AsyncClient] = []
        self._reserved: list[socket.socket] = []

    async def serve(self, app: ASGIApp) -> str:
        """`app` served by uvicorn (as `eventgate serve` does) on a free loopback port."""
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it each response waits ~40 ms for a delayed ACK
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        config = uvicorn.Config(app, http="httptools", lifespan="off", access_log=False,
                                log_level="warning")  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._servers.append((server, task))
        while not server.started:
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.005)
        self._reserved.append(sock)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def raw(self, *, silent: bool) -> tuple[RawServer, str]:
        server = RawServer(silent=silent)
        self._raw.append(server)
        return server, await server.start()

    def dead(self) -> str:
        """A URL nothing listens on: a bound port without listen() refuses connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._reserved.append(sock)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def remote(self, urls: list[str], **options: Any) -> RemoteUpstream:
        remote = RemoteUpstream(urls, **options)
        self._remotes.append(remote)
        return remote

    async def front(self, app: ASGIApp) -> httpx.AsyncClient:
        """A client of `app` (a RemoteUpstream, or a gateway) served by uvicorn."""
        client = httpx.AsyncClient(base_url=await self.serve(app), trust_env=False)
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
        for remote in self._remotes:
            await remote.aclose()
        for server, _ in self._servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._servers))
        for raw in self._raw:
            await raw.close()
        for sock in self._reserved:
            sock.close()


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    net = Net()
    try:
        yield net
    finally:
        await net.close()


async def echo(net: Net) -> tuple[Echo, str]:
    app = Echo()
    return app, await net.serve(app)


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]


async def call(app: ASGIApp, method: str, path: str, headers: Iterable[tuple[str, str]],
               messages: list[Message], client: tuple[str, int] | None = None,
               ) -> tuple[int | None, list[Message]]:  # fmt: skip
    """`app` called directly as ASGI, the request body given as `messages`."""
    scope: Scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": client, "server": ("gateway", 80),
    }  # fmt: skip
    incoming = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # a real server blocks until the client goes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return status, sent


# -- forwarding ----------------------------------------------------------------------------


async def test_a_get_is_forwarded_with_its_path_query_and_end_to_end_headers(net: Net) -> None:
    upstream, url = await echo(net)
    client = await net.front(net.remote([url]))
    response = await client.get(
        "/api/things/a%2Fb%20c",
        params={"x": "1", "y": "é", "z": ""},
        headers={
            "x-request-id": "req-1",
            "x-eventgate-consumer": "alice",
            "if-none-match": '"v6"',
            "x-custom": "kept",
            "te": "trailers",
            "upgrade": "h2c",
            "keep-alive": "timeout=5",
            "proxy-authorization": "Basic c2VjcmV0",
            "trailer": "x-checksum",
        },
    )
    assert response.status_code == 201, response.text
    [seen] = upstream.requests
    assert seen.method == "GET"
    assert seen.raw_path == b"/api/things/a%2Fb%20c"  # not decoded, not re-encoded
    assert seen.query == b"x=1&y=%C3%A9&z="
    assert seen.body == b""
    assert seen.one("x-request-id") == "req-1"
    assert seen.one("x-eventgate-consumer") == "alice"
    assert seen.one("if-none-match") == '"v6"'
    assert seen.one("x-custom") == "kept"
    assert seen.one("x-forwarded-for") == "127.0.0.1"
    assert seen.one("host") == url.removeprefix("http://")
    assert not seen.names & HOP_BY_HOP, seen.headers
    assert INTERNAL_HEADER not in seen.names  # no token configured, none sent

    assert response.headers["location"] == "/api/things/42"
    assert response.headers["etag"] == '"v7"'
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert response.json()["query"] == "x=1&y=%C3%A9&z="
    # the front server's own date and server, not a second pair from the upstream
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) == 1
    assert len(response.headers.get_list("content-length")) == 1


async def test_a_post_is_forwarded_with_its_json_body_whole(net: Net) -> None:
    upstream, url = await echo(net)
    client = await net.front(net.remote([url]))
    document = {"name": "widget", "notes": "n" * 300_000}  # several receive() chunks
    response = await client.post(
        "/api/things",
        json=document,
        headers={
            "Idempotency-Key": "key-1",
            "x-request-id": "req-2",
            "x-eventgate-consumer": "bob",
        },
    )
    assert response.status_code == 201, response.text
    [seen] = upstream.requests
    assert seen.method == "POST" and seen.raw_path == b"/api/things" and seen.query == b""
    assert json.loads(seen.body) == document
    assert seen.one("content-length") == str(len(seen.body))
    assert seen.one("content-type") == "application/json"
    assert seen.one("idempotency-key") == "key-1"
    assert seen.one("x-request-id") == "req-2"
    assert seen.one("x-eventgate-consumer") == "bob"
    assert seen.one("x-forwarded-for") == "127.0.0.1"
    assert "transfer-encoding" not in seen.names
    # the response body (larger than one read) comes back whole
    assert json.loads(response.json()["body"]) == document
    assert response.headers["location"] == "/api/things/42"
    assert len(response.headers.get_list("date")) == 1


async def test_hop_by_hop_headers_are_dropped_and_the_client_address_forwarded(
    net: Net,
) -> None:
    """Called as ASGI, with every hop-by-hop header the front server could hand over."""
    upstream, url = await echo(net)
    remote = net.remote([url])
    headers = [
        ("host", "gateway.example"), ("content-length", "999"),
        ("transfer-encoding", "chunked"), ("connection", "close, te"), ("keep-alive", "300"),
        ("proxy-authenticate", "Basic"), ("proxy-authorization", "Basic eA=="),
        ("te", "trailers"), ("trailer", "x-sum"), ("upgrade", "websocket"),
        ("content-type", "application/json"), ("x-custom", "kept"),
    ]  # fmt: skip
    body = {"type": "http.request", "body": b'{"a": 1}', "more_body": False}
    status, _ = await call(remote, "PUT", "/things/1", headers, [body], ("203.0.113.7", 4242))
    assert status == 201
    [seen] = upstream.requests
    assert seen.body == b'{"a": 1}'
    assert not seen.names & HOP_BY_HOP, seen.headers
    assert seen.one("host") == url.removeprefix("http://")
    assert seen.one("content-length") == "8"
    assert seen.all("connection") in ([], ["keep-alive"])  # the pool's own, not "close, te"
    assert seen.one("x-custom") == "kept"
    assert seen.one("x-forwarded-for") == "203.0.113.7"


async def test_a_body_cut_short_by_a_client_disconnect_is_not_forwarded(net: Net) -> None:
    """The client went away mid-upload: the upstream must not get the part as a whole request
    (an in-process Starlette app raises ClientDisconnect here and applies nothing)."""
    upstream, url = await echo(net)
    remote = net.remote([url])
    headers = [("content-type", "application/json"), ("content-length", "30")]
    messages: list[Message] = [
        {"type": "http.request", "body": b'{"name": "wid', "more_body": True},
        {"type": "http.disconnect"},
    ]
    await call(remote, "POST", "/things", headers, messages, ("127.0.0.1", 4242))
    assert upstream.requests == []


async def test_requests_are_spread_over_the_urls_in_turn(net: Net) -> None:
    (one, url_one), (two, url_two) = await echo(net), await echo(net)
    client = await net.front(net.remote([url_one, url_two]))
    for _ in range(4):
        assert (await client.get("/things")).status_code == 201
    assert (len(one.requests), len(two.requests)) == (2, 2)


# -- retries -------------------------------------------------------------------------------


async def test_a_refused_connection_is_retried_on_the_next_url(net: Net) -> None:
    """Nothing was sent, so even a POST without an Idempotency-Key goes to the next URL."""
    upstream, url = await echo(net)
    for method in ["GET", "POST", "PATCH"]:
        upstream.requests.clear()
        client = await net.front(net.remote([net.dead(), url]))  # a new one starts at the first
        response = await client.request(method, "/things", content=b'{"n": 1}')
        assert response.status_code == 201, (method, response.text)
        [seen] = upstream.requests
        assert (seen.method, seen.body) == (method, b'{"n": 1}')


async def test_retries_are_bounded(net: Net) -> None:
    upstream, url = await echo(net)
    client = await net.front(net.remote([net.dead(), url], retries=0))
    assert_problem(await client.get("/things"), 502)
    assert upstream.requests == []


async def test_every_url_down_is_a_502_problem(net: Net) -> None:
    client = await net.front(net.remote([net.dead(), net.dead()]))
    for method in ["GET", "POST"]:
        started = time.monotonic()
        response = await client.request(method, "/things", content=b"{}")
        assert_problem(response, 502)
        assert time.monotonic() - started < 2


async def test_a_broken_request_that_may_have_been_applied_is_not_retried(net: Net) -> None:
    """Without an Idempotency-Key the upstream may have applied it: one attempt, then 502.
    PUT and DELETE too: eventgate maps them to commands, and each run of one appends."""
    broken, broken_url = await net.raw(silent=False)
    upstream, url = await echo(net)
    for attempts, method in enumerate(["POST", "PATCH", "PUT", "DELETE"], 1):
        client = await net.front(net.remote([broken_url, url]))
        response = await client.request(method, "/things", json={"name": "x"})
        assert_problem(response, 502)
        assert broken.requests == attempts, method
        assert upstream.requests == []


async def test_a_broken_idempotent_request_is_retried_on_the_next_url(net: Net) -> None:
    broken, broken_url = await net.raw(silent=False)
    upstream, url = await echo(net)
    cases = [("GET", {}), ("OPTIONS", {}), ("PUT", {"Idempotency-Key": "k-8"}),
             ("POST", {"Idempotency-Key": "k-9"})]  # fmt: skip
    for attempts, (method, headers) in enumerate(cases, 1):
        upstream.requests.clear()
        client = await net.front(net.remote([broken_url, url]))
        response = await client.request(method, "/things", content=b"{}", headers=headers)
        assert response.status_code == 201, (method, response.text)
        assert broken.requests == attempts, method
        assert [r.method for r in upstream.requests] == [method]


async def test_a_broken_idempotent_request_is_tried_retries_plus_one_times(net: Net) -> None:
    broken, broken_url = await net.raw(silent=False)
    client = await net.front(net.remote([broken_url], retries=2))
    assert_problem(await client.get("/things"), 502)
    assert broken.requests == 3


# -- timeouts ------------------------------------------------------------------------------


async def test_a_post_that_times_out_is_a_504_after_one_attempt(net: Net) -> None:
    silent, silent_url = await net.raw(silent=True)
    upstream, url = await echo(net)
    client = await net.front(net.remote([silent_url, url], timeout=0.3))
    started = time.monotonic()
    response = await client.post("/things", json={"name": "x"})
    elapsed = time.monotonic() - started
    assert_problem(response, 504)
    assert silent.requests == 1
    assert upstream.requests == []
    assert 0.3 <= elapsed < 2


async def test_a_get_that_times_out_is_retried(net: Net) -> None:
    silent, silent_url = await net.raw(silent=True)
    upstream, url = await echo(net)
    client = await net.front(net.remote([silent_url, url], timeout=0.3))
    assert (await client.get("/things")).status_code == 201
    assert silent.requests == 1 and len(upstream.requests) == 1


async def test_a_get_that_times_out_everywhere_is_a_504(net: Net) -> None:
    silent, silent_url = await net.raw(silent=True)
    client = await net.front(net.remote([silent_url], timeout=0.3, retries=1))
    assert_problem(await client.get("/things"), 504)
    assert silent.requests == 2


# -- answers from the upstream -------------------------------------------------------------


async def test_an_error_status_is_passed_on_as_is_and_never_retried(net: Net) -> None:
    (one, url_one), (two, url_two) = await echo(net), await echo(net)
    client = await net.front(net.remote([url_one, url_two]))
    answered = 0
    for method in ["GET", "POST"]:
        for status in [400, 404, 409, 412, 500, 502, 503, 504]:
            response = await client.request(method, f"/status/{status}", content=b"{}")
            assert response.status_code == status
            assert response.headers["content-type"] == PROBLEM
            assert response.json() == {"status": status, "title": "from upstream"}
            answered += 1
            assert len(one.requests) + len(two.requests) == answered, (method, status)


# -- the internal token --------------------------------------------------------------------


async def test_the_internal_token_is_sent_and_a_client_cannot_forge_it(net: Net) -> None:
    upstream, url = await echo(net)
    with_token = await net.front(net.remote([url], internal_token=TOKEN))
    without = await net.front(net.remote([url]))
    forged = {INTERNAL_HEADER: "forged-by-the-client-0123456789"}
    assert (await with_token.get("/things", headers=forged)).status_code == 201
    assert (await without.get("/things", headers=forged)).status_code == 201
    assert (await without.get("/things", headers={INTERNAL_HEADER: TOKEN})).status_code == 201
    first, second, third = upstream.requests
    assert first.all(INTERNAL_HEADER) == [TOKEN]
    assert second.all(INTERNAL_HEADER) == [] and third.all(INTERNAL_HEADER) == []


async def test_a_guarded_service_answers_the_token_only(net: Net) -> None:
    upstream = Echo()
    guarded = await net.serve(service_guard(upstream, TOKEN))
    direct = httpx.AsyncClient(base_url=guarded, trust_env=False)
    async with direct:
        assert_problem(await direct.get("/things"), 401)
        assert_problem(await direct.get("/things", headers={INTERNAL_HEADER: "short"}), 401)
        wrong = TOKEN[:-1] + "X"
        assert_problem(await direct.post("/things", headers={INTERNAL_HEADER: wrong}), 401)
        assert_problem(await direct.get("/things", headers={INTERNAL_HEADER: TOKEN + "x"}), 401)
        assert upstream.requests == []
        assert (await direct.get("/things", headers={INTERNAL_HEADER: TOKEN})).status_code == 201
    assert len(upstream.requests) == 1

    # through RemoteUpstreams: the right token passes; a wrong or missing one is the
    # deployment's mistake, not the client's: a 502 problem, not the service's 401
    right = await net.front(net.remote([guarded], internal_token=TOKEN))
    other = await net.front(net.remote([guarded], internal_token="another-token-0123456789"))
    none = await net.front(net.remote([guarded]))
    forged = {INTERNAL_HEADER: TOKEN}  # a client that knows the token still cannot send it
    assert (await right.post("/things", json={})).status_code == 201
    assert_problem(await other.post("/things", json={}), 502)
    assert_problem(await none.post("/things", json={}, headers=forged), 502)
    assert len(upstream.requests) == 2


def test_a_url_that_is_not_a_service_url_is_refused() -> None:
    for url in ("127.0.0.1:8001", "ftp://host/x", "http://"):
        with pytest.raises(ValueError, match="not a service URL"):
            RemoteUpstream([url])


def test_a_short_token_or_no_url_is_refused() -> None:
    app = Echo()
    with pytest.raises(ValueError, match="16"):
        InternalOnly(app, "x" * 15)
    with pytest.raises(ValueError):
        service_guard(app, "")
    assert isinstance(InternalOnly(app, "x" * 16), InternalOnly)
    assert not isinstance(service_guard(app, None), InternalOnly)  # no token, no check
    with pytest.raises(ValueError):
        RemoteUpstream([])


# -- behind the gateway --------------------------------------------------------------------


async def test_the_gateway_forwards_to_remote_services_with_its_own_headers(net: Net) -> None:
    (commands, commands_url), (queries, queries_url) = await echo(net), await echo(net)
    key = "alice-api-key-0123456789"
    alice = Consumer("alice", hashlib.sha256(key.encode()).hexdigest(), frozenset({"write"}))
    remote_commands = net.remote([commands_url], internal_token=TOKEN)
    remote_queries = net.remote([queries_url], internal_token=TOKEN)
    upstreams = {"commands": remote_commands, "queries": remote_queries,
                 "admin": remote_commands}  # fmt: skip
    front = gateway(inventory_app(), GatewayConfig(consumers=[alice]), upstreams)
    client = await net.front(front)
    response = await client.post(
        "/api/inventory-items",
        json={"name": "widget"},
        headers={
            "Authorization": f"Bearer {key}",
            "x-request-id": "req-77",
            "x-eventgate-consumer": "mallory",
            INTERNAL_HEADER: "forged",
            # naming them hop-by-hop must not get the gateway's own headers dropped
            "Connection": "x-eventgate-consumer, x-request-id",
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers.get_list("x-request-id") == ["req-77"]
    assert len(response.headers.get_list("date")) == 1
    assert queries.requests == []
    [seen] = commands.requests
    assert seen.raw_path == b"/api/inventory-items" and json.loads(seen.body) == {"name": "widget"}
    assert seen.all("x-eventgate-consumer") == ["alice"]
    assert seen.all("x-request-id") == ["req-77"]
    assert seen.all(INTERNAL_HEADER) == [TOKEN]
    assert seen.one("x-forwarded-for") == "127.0.0.1"
