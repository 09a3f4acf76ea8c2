"""An APISIX standalone `apisix.yaml` (config_provider: yaml) from an Export.

- upstreams: `queries`, and `commands` twice: `commands` is never retried once a request
  was sent (nginx cannot tell a refused connection from a broken one, so it is not retried
  at all) and `commands-retried` is, for reads of the admin API and for requests carrying an
  Idempotency-Key (as gateway/upstream.py decides). Every node of each, health-checked on
  the services' HEALTH_PATH with the internal token, actively and passively.
- routes: /openapi.json and /asyncapi.json (the mocking plugin answers the documents, no
  key needed, as the embedded gateway); /console and /console/* (GET, HEAD) to the command
  services, which serve the console's files, no key needed either; one per Route (method +
  path, `:param` for `{param}`), with key-auth (X-API-Key) and consumer-restriction (the
  consumers holding the route's scope: 403 for the others); then per path a 405 with Allow
  (fault-injection's abort), then a 404, both problem+json.
- consumers: each with its key (key-auth) and its rate limit (limit-count, keyed by consumer,
  429 past it, RateLimit-* headers named in plugin_metadata).
- global_rules: request-id (X-Request-ID kept or made, and returned) and client-control
  (bodies over max_body_bytes: 413).
- proxy-rewrite on each route sets x-eventgate-consumer from the authenticated consumer and
  the internal token, over any copy the client sent.
The file ends with `#END`, without which APISIX does not load it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import yaml

from eventgate.errors import ConfigError
from eventgate.gateway.app import KEY_HEADERS, QUERY_KEY
from eventgate.gateway.export.model import Export, KeyedConsumer, Route, Service
from eventgate.gateway.internal import HEALTH_PATH, INTERNAL_HEADER
from eventgate.http.forwarded import CONSUMER_HEADER, REQUEST_ID_HEADER
from eventgate.http.problems import PROBLEM_JSON, problem_body

__all__ = ["apisix_config", "apisix_yaml"]

_USERNAME = re.compile(r"^[a-zA-Z0-9_\-]+$")  # apisix/schema_def.lua, consumer.username
_RETRIED = "commands-retried"


def apisix_yaml(export: Export) -> str:
    """The standalone file's text: a comment, the config, `#END`."""
    head = (
        f"# APISIX standalone config for eventgate app {export.app!r}: eventgate gateway export"
        " apisix\n# (docs/envoy.md). It holds API keys and the internal token: keep it mode"
        " 0600.\n"
    )
    body = yaml.safe_dump(apisix_config(export), sort_keys=False, width=100, allow_unicode=True)
    return head + body + "#END\n"


def apisix_config(export: Export) -> dict[str, Any]:
    """The document APISIX reads from apisix.yaml (or, as JSON, apisix.json)."""
    if export.internal_token is not None and "$" in export.internal_token:
        raise ConfigError("the internal token holds a '$', which APISIX would read as a variable")
    for consumer in export.consumers:
        if not _USERNAME.match(consumer.name):
            raise ConfigError(f"APISIX consumer names are letters, digits, '_' and '-':"
                              f" {consumer.name!r} is not one")  # fmt: skip
    documents = {"openapi": export.openapi, "asyncapi": export.asyncapi}
    routes: list[dict[str, Any]] = [{  # as the embedded gateway: no key needed
        "name": name,
        "uri": f"/{name}.json",
        "methods": ["GET", "HEAD"],
        "priority": 4,
        "plugins": {"mocking": {"response_example": document.decode(),
                                "content_type": "application/json", "with_mock_header": False}},
    } for name, document in documents.items() if document]  # fmt: skip
    # the console's files, from the command services: no key, as the embedded gateway
    # serves them (they hold no data; each call the page makes needs admin)
    routes += [{
        "name": name,
        "uri": uri,
        "methods": ["GET", "HEAD"],
        "priority": 4,
        "plugins": {"proxy-rewrite": _forwarded(export, keyed=False)},
        "upstream_id": _RETRIED,
    } for name, uri in (("console", "/console"), ("console files", "/console/*"))]  # fmt: skip
    for route in export.routes:
        routes += _routes(export, route)
    for path in export.paths:
        allowed = ", ".join(path.allowed)
        body = problem_body(405, "this method is not allowed here", path.pattern,
                            message="Http Method not supported")  # fmt: skip
        routes.append({
            "name": f"405 {path.pattern}"[:256],
            "uri": _uri(path.pattern),
            "priority": 1,
            "plugins": {**_auth(export), "fault-injection": {"abort": {
                "http_status": 405, "body": orjson.dumps(body).decode(),
                "headers": {"Content-Type": PROBLEM_JSON, "Allow": allowed}}}},
        })  # fmt: skip
    missing = orjson.dumps(problem_body(404, "no resource here")).decode()
    routes.append({
        "name": "404",
        "uri": "/*",
        "priority": 0,
        "plugins": {**_auth(export), "fault-injection": {"abort": {
            "http_status": 404, "body": missing, "headers": {"Content-Type": PROBLEM_JSON}}}},
    })  # fmt: skip
    for n, route_config in enumerate(routes, 1):
        route_config["id"] = f"eventgate-{n}"
    upstreams = []
    for service in export.services:
        if service.name == "commands":
            upstreams += [_upstream(export, service, "commands", retried=False),
                          _upstream(export, service, _RETRIED, retried=True)]  # fmt: skip
        else:
            upstreams.append(_upstream(export, service, service.name, retried=True))
    document: dict[str, Any] = {
        "routes": [{"id": r.pop("id"), **r} for r in routes],
        "upstreams": upstreams,
    }
    if export.consumers:
        document["consumers"] = [_consumer(c) for c in export.consumers]
    if export.rate_limited:
        document["plugin_metadata"] = [{
            "id": "limit-count",
            "limit_header": "RateLimit-Limit",
            "remaining_header": "RateLimit-Remaining",
            "reset_header": "RateLimit-Reset",
        }]  # fmt: skip
    document["global_rules"] = [{
        "id": "eventgate",
        "plugins": {
            "request-id": {"header_name": REQUEST_ID_HEADER, "include_in_response": True},
            "client-control": {"max_body_size": export.max_body_bytes},
        },
    }]  # fmt: skip
    return document


def _routes(export: Export, route: Route) -> list[dict[str, Any]]:
    name = f"{' '.join(route.methods)} {route.pattern}"[:240]
    plugins: dict[str, Any] = {**_auth(export), "proxy-rewrite": _forwarded(export)}
    if export.auth_enabled:
        restriction: dict[str, Any] = {
            "type": "consumer_name",
            "rejected_code": 403,
            "rejected_msg": f"this needs the {route.scope!r} scope",
        }
        # consumer-restriction needs a non-empty list: a name no consumer has locks all out
        restriction["whitelist"] = list(route.consumers) or ["-nobody-"]
        plugins["consumer-restriction"] = restriction
    base = {"uri": _uri(route.pattern), "methods": list(route.methods), "priority": 2,
            "plugins": plugins}  # fmt: skip
    if route.websocket:
        base["enable_websocket"] = True
    if route.takes_query_key and "key-auth" in plugins:  # browsers: WebSocket, EventSource
        plugins["key-auth"] = {**plugins["key-auth"], "query": QUERY_KEY}
    if route.service != "commands":
        return [{"name": name, **base, "upstream_id": route.service}]
    if route.reads:
        return [{"name": name, **base, "upstream_id": _RETRIED}]
    keyed = {**base, "priority": 3, "vars": [["http_idempotency_key", "~~", "."]]}
    return [
        {"name": f"{name} (Idempotency-Key)", **keyed, "upstream_id": _RETRIED},
        {"name": name, **base, "upstream_id": "commands"},
    ]


def _auth(export: Export) -> dict[str, Any]:
    if not export.auth_enabled:
        return {}
    header = KEY_HEADERS[0]
    return {"key-auth": {"header": header, "hide_credentials": True}}


def _forwarded(export: Export, *, keyed: bool = True) -> dict[str, Any]:
    """Headers toward the services: the consumer key-auth found (on a `keyed` route) and the
    internal token, over whatever the client sent under those names (removed when there is
    nothing to set)."""
    setting: dict[str, str] = {}
    removed: list[str] = []
    if export.auth_enabled and keyed:
        setting[CONSUMER_HEADER] = "$consumer_name"
    else:
        removed.append(CONSUMER_HEADER)
    if export.internal_token is not None:
        setting[INTERNAL_HEADER] = export.internal_token
    else:
        removed.append(INTERNAL_HEADER)
    headers: dict[str, Any] = {}
    if setting:
        headers["set"] = setting
    if removed:
        headers["remove"] = removed
    return {"headers": headers}


def _uri(pattern: str) -> str:
    """A route pattern as APISIX's radixtree writes it: `{id}` is `:id`."""
    return re.sub(r"\{([a-z_]+)\}", r":\1", pattern)


def _upstream(export: Export, service: Service, name: str, *, retried: bool) -> dict[str, Any]:
    headers = [] if export.internal_token is None else [
        f"{INTERNAL_HEADER}: {export.internal_token}"]  # fmt: skip
    active: dict[str, Any] = {
        "type": "https" if service.tls else "http",
        "timeout": 1,
        "http_path": HEALTH_PATH,
        "healthy": {"interval": 2, "successes": 1},
        "unhealthy": {"interval": 1, "http_failures": 2, "tcp_failures": 2, "timeouts": 2},
    }
    if headers:
        active["req_headers"] = headers
    connect = min(export.timeout, 2.0)
    return {
        "id": name,
        "name": name,
        "type": "least_conn",
        "scheme": "https" if service.tls else "http",
        "nodes": [{"host": i.host, "port": i.port, "weight": 1} for i in service.instances],
        "retries": min(2, len(service.instances) - 1) if retried else 0,
        "timeout": {"connect": connect, "send": export.timeout, "read": export.timeout},
        "pass_host": "pass",
        "keepalive_pool": {"size": 256, "idle_timeout": 4, "requests": 1000},
        "checks": {
            "active": active,
            "passive": {
                "type": "http",
                # a status is an answer (a 503 of a parked stream too): only failures count
                "healthy": {"successes": 1},
                "unhealthy": {"tcp_failures": 2, "timeouts": 3, "http_failures": 0},
            },
        },
    }


def _consumer(consumer: KeyedConsumer) -> dict[str, Any]:
    plugins: dict[str, Any] = {"key-auth": {"key": consumer.key}}
    limit = consumer.rate_limit
    if limit is not None:
        plugins["limit-count"] = {
            "count": limit.amount,
            "time_window": limit.seconds,
            "window_type": "sliding",  # the embedded gateway's window moves too
            "key_type": "var",
            "key": "consumer_name",
            "policy": "local",
            "rejected_code": 429,
            "rejected_msg": f"rate limit {limit.text} exceeded",
            "show_limit_quota_header": True,
        }
    return {"username": consumer.name, "plugins": plugins}
