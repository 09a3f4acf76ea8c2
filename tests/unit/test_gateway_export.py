"""The gateway exports route as the embedded gateway does: for every method on every path of
the route table (and paths it does not have), the Envoy routes and the APISIX routes, matched
the way each matches them, lead where RouteTable.match leads (the same service, 405 with the
same Allow, 404), to the same consumers; and the API keys are taken only when they match the
config's hashes."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from eventgate.app import App, load_app
from eventgate.bootstrap import gateway_openapi, route_table
from eventgate.errors import ConfigError
from eventgate.gateway.config import GatewayConfig, load_config
from eventgate.gateway.export.apisix import apisix_config, apisix_yaml
from eventgate.gateway.export.envoy import envoy_bootstrap, envoy_yaml
from eventgate.gateway.export.model import SERVICES, Export, build_export, key_variable, read_keys

KEYS = {"reader": "reader-key", "writer": "writer-key", "admin": "admin-key", "ops": "ops-key"}
CONFIG = """
[gateway]
max_body_bytes = 4096
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
rate_limit = "5/minute"
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]
[[gateway.consumers]]
name = "admin"
key_sha256 = "{admin}"
scopes = ["admin"]
rate_limit = "100/second"
[[gateway.consumers]]
name = "ops"
key_sha256 = "{ops}"
scopes = ["write"]
"""
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE"]
APPS = ["eventgate.examples.inventory:app", "tests.e2e.apps.taskboard:app",
        "eventgate.examples.orders:app"]  # fmt: skip
SERVICE_URLS = {
    "commands": ["http://10.0.0.1:8001", "http://10.0.0.2:8001"],
    "queries": ["http://10.0.0.1:8002", "http://10.0.0.2:8002", "http://10.0.0.3:8002"],
}


def digests() -> dict[str, str]:
    return {name: hashlib.sha256(key.encode()).hexdigest() for name, key in KEYS.items()}


@pytest.fixture
def config(tmp_path: Path) -> GatewayConfig:
    path = tmp_path / "eventgate.toml"
    path.write_text(CONFIG.format(**digests()))
    return load_config(path)


def export_of(app: App, config: GatewayConfig, token: str | None = "t" * 20) -> Export:
    keys = KEYS if config.consumers else {}
    return build_export(app.name, route_table(app), gateway_openapi(app, config), config,
                        SERVICE_URLS, keys, internal_token=token)  # fmt: skip


def requests(app: App) -> list[tuple[str, str]]:
    """Every method on a path of each pattern, and paths no route has."""
    paths = {re.sub(r"\{[a-z_]+\}", "abc-1", r.pattern) for r in route_table(app).routes}
    paths |= {"/", "/nope", "/api", "/api/inventory-items/a/b", "/admin", "/openapi.json/x"}
    return [(method, path) for path in sorted(paths) for method in METHODS]


def embedded(app: App, config: GatewayConfig, method: str, path: str) -> tuple[object, ...]:
    """What the embedded gateway does with (method, path): (service, consumers that pass the
    scope check) or (405, Allow) or (404,)."""
    table = route_table(app)
    route = table.match(method, path)
    if route is None:
        allowed = table.allowed(path)
        return (405, ", ".join(allowed)) if allowed else (404,)
    holders = tuple(c.name for c in config.consumers if c.holds(route.needs(method)))
    return SERVICES[route.upstream], holders


def envoy_routing(
    document: dict[str, Any], method: str, path: str, keyed: bool
) -> tuple[object, ...]:
    """Where Envoy's first matching route leads: (cluster, allowed clients) or (status,)."""
    route = envoy_route(document, method, path, keyed)
    if "direct_response" in route:
        status = route["direct_response"]["status"]
        if status == 405:
            return 405, route["response_headers_to_add"][0]["header"]["value"]
        return (status,)
    auth = route.get("typed_per_filter_config", {}).get("envoy.filters.http.api_key_auth")
    holders = tuple(auth["allowed_clients"]) if auth else ()
    return route["route"]["cluster"], holders


def envoy_route(document: dict[str, Any], method: str, path: str, keyed: bool) -> dict[str, Any]:
    """Envoy's first matching route (path, safe_regex, prefix; :method and header matchers)."""
    listener = document["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    headers = {"idempotency-key"} if keyed else set()
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        match = route["match"]
        if "path" in match and path != match["path"]:
            continue
        if "prefix" in match and not path.startswith(match["prefix"]):
            continue
        if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
            continue
        if all(
            re.fullmatch(h["string_match"]["safe_regex"]["regex"], method)
            if h["name"] == ":method"
            else (h["name"] in headers) == h["present_match"]
            for h in match.get("headers", [])
        ):
            return dict(route)
    raise AssertionError(f"no Envoy route for {method} {path}")


def apisix_routing(
    document: dict[str, Any], method: str, path: str, keyed: bool
) -> tuple[object, ...]:
    """Where APISIX's route leads: (service, consumers allowed) or (status,)."""
    route = apisix_route(document, method, path, keyed)
    abort = route["plugins"].get("fault-injection", {}).get("abort")
    if abort is not None:
        status = abort["http_status"]
        return (405, abort["headers"]["Allow"]) if status == 405 else (status,)
    restriction = route["plugins"].get("consumer-restriction")
    holders = tuple(restriction["whitelist"]) if restriction else ()
    service = route["upstream_id"].removesuffix("-retried")
    return service, tuple(h for h in holders if h != "-nobody-")


def apisix_route(document: dict[str, Any], method: str, path: str, keyed: bool) -> dict[str, Any]:
    """APISIX's route: of those whose uri (radixtree: `:param` one segment, `/*` any), methods
    and vars match, the one of highest priority."""
    found = []
    for route in document["routes"]:
        pattern = route["uri"]
        if pattern.endswith("/*"):
            matched = path.startswith(pattern[:-1])
        else:
            matched = re.fullmatch(re.sub(r":[a-z_]+", "[^/]+", pattern), path) is not None
        if not matched or method not in route.get("methods", METHODS):
            continue
        if route.get("vars") and not keyed:
            continue
        found.append(route)
    return dict(max(found, key=lambda r: r["priority"]))


@pytest.mark.parametrize("reference", APPS)
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "idempotency-key"])
def test_envoy_and_apisix_route_every_request_as_the_embedded_gateway(
    reference: str, keyed: bool, config: GatewayConfig
) -> None:
    app = load_app(reference)
    export = export_of(app, config)
    envoy, apisix = envoy_bootstrap(export), apisix_config(export)
    for method, path in requests(app):
        expected = embedded(app, config, method, path)
        assert envoy_routing(envoy, method, path, keyed) == expected, (method, path)
        assert apisix_routing(apisix, method, path, keyed) == expected, (method, path)


@pytest.mark.parametrize("keys", [True, False], ids=["auth", "no-auth"])
def test_the_console_files_go_to_the_command_services_without_a_key(
    keys: bool, config: GatewayConfig
) -> None:
    """As the embedded gateway serves them (gateway/app.py): GET or HEAD of /console and
    /console/NAME need no key and count against no limit, and no consumer is named to the
    service; any other method, or a path that only starts with /console, is a 404 behind
    the key as before."""
    export = export_of(load_app(APPS[0]), config if keys else GatewayConfig())
    envoy, apisix = envoy_bootstrap(export), apisix_config(export)
    off = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
           "disabled": True, "is_optional": True}  # fmt: skip
    for method, path in itertools.product(
        ("GET", "HEAD"), ("/console", "/console/", "/console/main.js")
    ):
        route = envoy_route(envoy, method, path, keyed=False)
        assert route["route"]["cluster"] == "commands", (method, path)
        assert "reset" in route["route"]["retry_policy"]["retry_on"]  # a read: any instance
        skipped = route["typed_per_filter_config"]
        assert skipped["envoy.filters.http.api_key_auth"] == off
        assert skipped["envoy.filters.http.local_ratelimit"] == off
        assert route.get("request_headers_to_remove", []) == (["x-eventgate-consumer"] * keys)
        served = apisix_route(apisix, method, path, keyed=False)
        assert served["upstream_id"] == "commands-retried", (method, path)
        assert set(served["plugins"]) == {"proxy-rewrite"}  # no key-auth, no restriction
        headers = served["plugins"]["proxy-rewrite"]["headers"]
        assert headers == {"set": {"x-eventgate-internal": "t" * 20},
                           "remove": ["x-eventgate-consumer"]}  # fmt: skip
    for method, path in [
        ("POST", "/console"),
        ("DELETE", "/console/main.js"),
        ("GET", "/consoles"),
    ]:
        assert envoy_routing(envoy, method, path, keyed=False) == (404,)
        assert "envoy.filters.http.api_key_auth" not in envoy_route(
            envoy, method, path, keyed=False)["typed_per_filter_config"]  # fmt: skip
        refused = apisix_route(apisix, method, path, keyed=False)
        assert refused["name"] == "404" and ("key-auth" in refused["plugins"]) == keys


def test_only_reads_and_idempotency_keys_are_retried_after_sending(config: GatewayConfig) -> None:
    export = export_of(load_app(APPS[0]), config)
    listener = envoy_bootstrap(export)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        if "route" not in route:
            continue
        methods = route["match"]["headers"][0]["string_match"]["safe_regex"]["regex"].split("|")
        keyed = any(h["name"] == "idempotency-key" for h in route["match"]["headers"])
        retried_on = set(route["route"]["retry_policy"]["retry_on"].split(","))
        sent_again = "reset" in retried_on
        assert sent_again == (keyed or set(methods) <= {"GET", "HEAD", "OPTIONS"}), route["name"]
        assert "connect-failure" in retried_on  # nothing sent yet: always another instance
    apisix = apisix_config(export)
    retries = {u["id"]: u["retries"] for u in apisix["upstreams"]}
    assert retries == {"commands": 0, "commands-retried": 1, "queries": 2}
    for route in apisix["routes"]:
        if route.get("upstream_id") == "commands":
            assert route["methods"] and not set(route["methods"]) <= {"GET", "HEAD", "OPTIONS"}
            assert "vars" not in route


def test_the_key_may_come_in_api_key_on_the_event_stream_routes_only(
    config: GatewayConfig,
) -> None:
    """As the embedded gateway (gateway/app.py): browsers set no headers on an EventSource or
    a WebSocket, so GET /api/events, <item>/events (both item paths) and /api/events/ws take
    ?api_key=."""
    export = export_of(load_app(APPS[0]), config)
    listener = envoy_bootstrap(export)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    in_query = set()
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        auth = route.get("typed_per_filter_config", {}).get("envoy.filters.http.api_key_auth")
        if auth and {"query": "api_key"} in auth.get("key_sources", []):
            in_query.add(route["name"])
            assert auth["forwarding"]["hide_credentials"] is True  # not passed upstream
    streams = {"GET HEAD /api/events", "GET /api/events/ws",
               "GET HEAD /api/inventory-items/{id}/events",
               "GET HEAD /api/InventoryItem/{id}/events"}  # fmt: skip
    assert in_query == streams
    apisix = {r["name"] for r in apisix_config(export)["routes"]
              if r["plugins"].get("key-auth", {}).get("query") == "api_key"}  # fmt: skip
    assert apisix == streams


def test_every_instance_is_listed_and_health_checked_with_the_token(config: GatewayConfig) -> None:
    export = export_of(load_app(APPS[0]), config, token="the-internal-token-1234")
    clusters = envoy_bootstrap(export)["static_resources"]["clusters"]
    assert [c["name"] for c in clusters] == ["commands", "queries"]
    for cluster in clusters:
        hosts = [e["endpoint"]["address"]["socket_address"]
                 for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]  # fmt: skip
        urls = [f"http://{h['address']}:{h['port_value']}" for h in hosts]
        assert urls == SERVICE_URLS[cluster["name"]]
        check = cluster["health_checks"][0]["http_health_check"]
        assert check["path"] == "/_eventgate/health"
        assert check["request_headers_to_add"][0]["header"] == {
            "key": "x-eventgate-internal", "value": "the-internal-token-1234"}  # fmt: skip
    text = envoy_yaml(export)
    assert text.count("the-internal-token-1234") == 3  # two health checks, the routes
    assert apisix_yaml(export).endswith("\n#END\n")


def test_without_consumers_no_key_is_asked_and_the_consumer_header_is_dropped() -> None:
    export = export_of(load_app(APPS[0]), GatewayConfig(), token=None)
    listener = envoy_bootstrap(export)["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]
    assert names == ["envoy.filters.http.buffer", "envoy.filters.http.router"]
    host = manager["route_config"]["virtual_hosts"][0]
    assert host["request_headers_to_remove"] == ["x-eventgate-consumer", "x-eventgate-internal"]
    rewrite = apisix_config(export)["routes"][1]["plugins"]["proxy-rewrite"]
    assert rewrite == {"headers": {"remove": ["x-eventgate-consumer", "x-eventgate-internal"]}}


def test_a_percent_in_the_token_is_not_an_envoy_command(config: GatewayConfig) -> None:
    export = export_of(load_app(APPS[0]), config, token="100%-secret-%REQ(x)%-token")
    assert "100%%-secret-%%REQ(x)%%-token" in envoy_yaml(export)
    with pytest.raises(ConfigError, match="variable"):
        apisix_config(export_of(load_app(APPS[0]), config, token="a-$secret-token-of-20"))


def test_keys_come_from_the_keys_file_else_the_environment(
    tmp_path: Path, config: GatewayConfig
) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text('reader = "reader-key"\nwriter = "writer-key"\n')
    environ = {"EVENTGATE_KEY_ADMIN": "admin-key", "EVENTGATE_KEY_OPS": "ops-key",
               "EVENTGATE_KEY_READER": "not used: the file names it"}  # fmt: skip
    assert read_keys(config, keys_file, environ) == KEYS
    assert key_variable("team-a.bot") == "EVENTGATE_KEY_TEAM_A_BOT"


@pytest.mark.parametrize(
    ("keys", "environ", "error"),
    [
        ('reader = "reader-key"\nwriter = "writer-key"\nadmin = "admin-key"\n', {},
         "no API key for consumer 'ops': give it in --keys-file or EVENTGATE_KEY_OPS"),
        ('reader = "READER-KEY"\n', {"EVENTGATE_KEY_WRITER": "w"},
         "the key given for consumer 'reader' does not match its key_sha256"),
        ('someone = "x"\n', {}, "no consumer in the config is named 'someone'"),
        ("reader = 5\n", {}, "the key of 'reader' must be a non-empty string"),
        ("reader = [\n", {}, "is not valid TOML"),
    ],
)  # fmt: skip
def test_a_missing_wrong_or_stray_key_is_one_error_naming_no_key(
    tmp_path: Path, config: GatewayConfig, keys: str, environ: dict[str, str], error: str
) -> None:
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(keys)
    with pytest.raises(ConfigError, match=re.escape(error)) as raised:
        read_keys(config, keys_file, environ)
    assert not any(key in str(raised.value) for key in (*KEYS.values(), "READER-KEY"))


@pytest.mark.parametrize(
    ("urls", "error"),
    [
        ({"commands": [], "queries": ["http://q:1"]}, "no address for the commands service"),
        ({"commands": ["ftp://c:1"], "queries": ["http://q:1"]}, "is not a service URL"),
        ({"commands": ["http://c:1/api"], "queries": ["http://q:1"]}, "is not a service URL"),
        ({"commands": ["http://c:1", "https://d:1"], "queries": ["http://q:1"]}, "mix http"),
        ({"commands": ["http://c:1", "http://c:1/"], "queries": ["http://q:1"]}, "twice"),
        ({"commands": ["http://c:99999"], "queries": ["http://q:1"]}, "out of range"),
    ],
)  # fmt: skip
def test_service_urls_are_checked(urls: dict[str, list[str]], error: str) -> None:
    app = load_app(APPS[0])
    with pytest.raises(ConfigError, match=error):
        build_export(app.name, route_table(app), {}, GatewayConfig(), urls, {})
