"""`gateway export apisix` writes only what APISIX's documented schema has: each object of the
standalone file is validated (JSON Schema draft 7: APISIX's schemas use the numeric
exclusiveMinimum of drafts 6+) against the relevant subset of APISIX's schemas, transcribed
below from apache/apisix at commit
f519a0f04ccfd4c13b5d06caf34bcde8c8593980 (3.9.0-921, 2026-08-20):

- apisix/schema_def.lua: id_schema, host_def, timeout_def, method_schema,
  health_checker_active/passive, nodes_schema (array form), upstream_schema, _M.route,
  _M.consumer, _M.global_rule;
- the plugins' `schema` (routes, global rules), `consumer_schema` (consumers) and
  `metadata_schema` (plugin_metadata): apisix/plugins/key-auth.lua, limit-count/init.lua,
  request-id.lua, client-control.lua, consumer-restriction.lua, proxy-rewrite.lua,
  fault-injection.lua, mocking.lua (all in conf/config.yaml.example's default plugin list);
- the file's top-level keys and `#END`: apisix/core/config_yaml.lua and
  docs/en/latest/deployment-modes.md ("How to configure rules", plugin_metadata `id` = the
  plugin's name).

Where APISIX leaves a plugin's object open, the subset here closes it
(additionalProperties: false): a misspelt field would be silently ignored by APISIX, and it
is exactly what this test is for. Fields the export does not use are left out."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from eventgate.app import load_app
from eventgate.bootstrap import gateway_openapi, route_table
from eventgate.gateway.config import GatewayConfig, load_config
from eventgate.gateway.export.apisix import apisix_yaml
from eventgate.gateway.export.model import build_export

ID = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": 64,
                 "pattern": "^[a-zA-Z0-9-_.]+$"},
                {"type": "integer", "minimum": 1}]}  # fmt: skip
HOST = {"type": "string", "pattern": "^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$"}
METHOD = {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                     "CONNECT", "TRACE", "PURGE"]}  # fmt: skip
TIMEOUT = {
    "type": "object",
    "properties": {name: {"type": "number", "exclusiveMinimum": 0}
                   for name in ("connect", "send", "read")},
    "required": ["connect", "send", "read"],
}  # fmt: skip
STATUSES = {"type": "array", "minItems": 1, "uniqueItems": True,
            "items": {"type": "integer", "minimum": 200, "maximum": 599}}  # fmt: skip


def counter(low: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": 254}


ACTIVE = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["http", "https", "tcp"]},
        "timeout": {"type": "number"},
        "concurrency": {"type": "integer"},
        "host": HOST,
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "http_method": METHOD,
        "http_path": {"type": "string"},
        "https_verify_certificate": {"type": "boolean"},
        "healthy": {"type": "object", "additionalProperties": False, "properties": {
            "interval": {"type": "integer", "minimum": 1},
            "http_statuses": STATUSES, "successes": counter(1)}},
        "unhealthy": {"type": "object", "additionalProperties": False, "properties": {
            "interval": {"type": "integer", "minimum": 1}, "http_statuses": STATUSES,
            "http_failures": counter(1), "tcp_failures": counter(1), "timeouts": counter(1)}},
        "req_headers": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "additionalProperties": False,
}  # fmt: skip
PASSIVE = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["http", "https", "tcp"]},
        "healthy": {"type": "object", "additionalProperties": False, "properties": {
            "http_statuses": STATUSES, "successes": counter(0)}},
        "unhealthy": {"type": "object", "additionalProperties": False, "properties": {
            "http_statuses": STATUSES, "tcp_failures": counter(0), "timeouts": counter(0),
            "http_failures": counter(0)}},
    },
    "additionalProperties": False,
}  # fmt: skip
UPSTREAM = {
    "type": "object",
    "properties": {
        "id": ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "nodes": {"type": "array", "items": {
            "type": "object",
            "properties": {"host": HOST, "port": {"type": "integer", "minimum": 1,
                                                  "maximum": 65535},
                           "weight": {"type": "integer", "minimum": 0},
                           "priority": {"type": "integer"}},
            "required": ["host", "weight"], "additionalProperties": False}},
        "retries": {"type": "integer", "minimum": 0},
        "retry_timeout": {"type": "number", "minimum": 0},
        "timeout": TIMEOUT,
        "keepalive_pool": {"type": "object", "additionalProperties": False, "properties": {
            "size": {"type": "integer", "minimum": 1},
            "idle_timeout": {"type": "number", "minimum": 0},
            "requests": {"type": "integer", "minimum": 1}}},
        # schema_def.lua leaves `type` a string; apisix/balancer.lua knows these
        "type": {"type": "string", "enum": ["roundrobin", "chash", "ewma", "least_conn"]},
        "checks": {"type": "object", "properties": {"active": ACTIVE, "passive": PASSIVE},
                   "required": ["active"], "additionalProperties": False},
        "scheme": {"enum": ["grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka"]},
        "pass_host": {"type": "string", "enum": ["pass", "node", "rewrite"]},
        "upstream_host": HOST,
    },
    "required": ["nodes"],
    "additionalProperties": False,
}  # fmt: skip
ROUTE = {
    "type": "object",
    "properties": {
        "id": ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
        "priority": {"type": "integer"},
        "methods": {"type": "array", "items": METHOD, "uniqueItems": True},
        "timeout": TIMEOUT,
        "vars": {"type": "array"},
        "plugins": {"type": "object"},
        "upstream_id": ID,
        "status": {"type": "integer", "enum": [1, 0]},
        "enable_websocket": {"type": "boolean"},
    },
    "required": ["uri"],
    "anyOf": [{"required": ["plugins"]}, {"required": ["upstream_id"]}],
    "additionalProperties": False,
}
CONSUMER = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 256,
                     "pattern": "^[a-zA-Z0-9_\\-]+$"},
        "desc": {"type": "string", "maxLength": 256},
        "plugins": {"type": "object"},
    },
    "required": ["username"],
    "additionalProperties": False,
}  # fmt: skip
GLOBAL_RULE = {
    "type": "object",
    "properties": {"id": ID, "plugins": {"type": "object"}},
    "required": ["id", "plugins"],
    "additionalProperties": False,
}
HEADER_VALUES = {"type": "object", "minProperties": 1,
                 "patternProperties": {"^[^:]+$": {"type": ["string", "number"]}},
                 "additionalProperties": False}  # fmt: skip
LIMIT_COUNT = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "exclusiveMinimum": 0},
        "time_window": {"type": "integer", "exclusiveMinimum": 0},
        "window_type": {"type": "string", "enum": ["fixed", "sliding"]},
        "key": {"type": "string"},
        "key_type": {"type": "string", "enum": ["var", "var_combination", "constant"]},
        "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599},
        "rejected_msg": {"type": "string", "minLength": 1},
        "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster",
                                              "redis-sentinel"]},
        "show_limit_quota_header": {"type": "boolean"},
    },
    "required": ["count", "time_window"],
    "additionalProperties": False,
}  # fmt: skip
PLUGINS = {  # each plugin's `schema`: on routes and global rules
    "key-auth": {"type": "object", "additionalProperties": False, "properties": {
        "header": {"type": "string"}, "query": {"type": "string"},
        "hide_credentials": {"type": "boolean"}}},
    "consumer-restriction": {"type": "object", "additionalProperties": False, "properties": {
        "type": {"type": "string", "enum": ["consumer_name", "service_id", "route_id",
                                            "consumer_group_id"]},
        "whitelist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "blacklist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "rejected_code": {"type": "integer", "minimum": 200},
        "rejected_msg": {"type": "string"}},
        "anyOf": [{"required": ["whitelist"]}, {"required": ["blacklist"]}]},
    "proxy-rewrite": {"type": "object", "additionalProperties": False, "minProperties": 1,
                      "properties": {"headers": {
        "type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
            "add": HEADER_VALUES, "set": HEADER_VALUES,
            "remove": {"type": "array", "minItems": 1,
                       "items": {"type": "string", "pattern": "^[^:]+$"}}}}}},
    "fault-injection": {"type": "object", "additionalProperties": False, "minProperties": 1,
                        "properties": {"abort": {
        "type": "object", "additionalProperties": False, "required": ["http_status"],
        "properties": {"http_status": {"type": "integer", "minimum": 200},
                       "body": {"type": "string", "minLength": 0},
                       "headers": HEADER_VALUES}}}},
    "request-id": {"type": "object", "additionalProperties": False, "properties": {
        "header_name": {"type": "string"}, "include_in_response": {"type": "boolean"},
        "algorithm": {"type": "string", "enum": ["uuid", "nanoid", "range_id", "ksuid",
                                                 "uuidv7"]}}},
    "client-control": {"type": "object", "additionalProperties": False, "properties": {
        "max_body_size": {"type": "integer", "minimum": 0}}},
    "limit-count": LIMIT_COUNT,
    "mocking": {"type": "object", "additionalProperties": False, "properties": {
        "response_status": {"type": "integer", "minimum": 100},
        "content_type": {"type": "string"}, "response_example": {"type": "string"},
        "with_mock_header": {"type": "boolean"}},
        "anyOf": [{"required": ["response_example"]}]},
}  # fmt: skip
CONSUMER_PLUGINS = {  # key-auth's `consumer_schema`; limit-count takes its `schema`
    "key-auth": {"type": "object", "properties": {"key": {"type": "string"}},
                 "required": ["key"], "additionalProperties": False},
    "limit-count": LIMIT_COUNT,
}  # fmt: skip
METADATA = {  # limit-count's `metadata_schema`, with the standalone file's `id`
    "limit-count": {"type": "object", "additionalProperties": False, "required": ["id"],
                    "properties": {"id": {"const": "limit-count"},
                                   "limit_header": {"type": "string"},
                                   "remaining_header": {"type": "string"},
                                   "reset_header": {"type": "string"}}},
}  # fmt: skip
FILE_KEYS = {"routes", "services", "upstreams", "consumers", "consumer_groups", "credentials",
             "ssls", "global_rules", "plugin_configs", "plugin_metadata", "plugins",
             "protos", "stream_routes", "secrets"}  # fmt: skip


def check(schema: dict[str, Any], value: object, where: str) -> None:
    try:
        jsonschema_rs.Draft7Validator(schema).validate(value)
    except jsonschema_rs.ValidationError as e:
        raise AssertionError(f"{where}: {e.message} at {list(e.instance_path)}") from None


def check_file(text: str) -> None:
    assert text.endswith("#END\n"), "APISIX loads a standalone file only when it ends with #END"
    document = yaml.safe_load(text)
    assert set(document) <= FILE_KEYS
    for n, upstream in enumerate(document["upstreams"]):
        check(UPSTREAM, upstream, f"upstreams[{n}]")
    upstreams = {u["id"] for u in document["upstreams"]}
    ids = [r["id"] for r in document["routes"]]
    assert len(set(ids)) == len(ids)
    for n, route in enumerate(document["routes"]):
        check(ROUTE, route, f"routes[{n}]")
        assert route.get("upstream_id", next(iter(upstreams))) in upstreams
        for name, conf in route["plugins"].items():
            check(PLUGINS[name], conf, f"routes[{n}].plugins.{name}")
    for n, consumer in enumerate(document.get("consumers", [])):
        check(CONSUMER, consumer, f"consumers[{n}]")
        for name, conf in consumer["plugins"].items():
            check(CONSUMER_PLUGINS[name], conf, f"consumers[{n}].plugins.{name}")
    for n, rule in enumerate(document["global_rules"]):
        check(GLOBAL_RULE, rule, f"global_rules[{n}]")
        for name, conf in rule["plugins"].items():
            check(PLUGINS[name], conf, f"global_rules[{n}].plugins.{name}")
    for n, metadata in enumerate(document.get("plugin_metadata", [])):
        check(METADATA[metadata["id"]], metadata, f"plugin_metadata[{n}]")


KEYS = {"reader": "reader-key", "writer": "writer-key", "ops-team_1": "ops-key"}
CONFIG = """
[gateway]
max_body_bytes = 65536
[[gateway.consumers]]
name = "reader"
key_sha256 = "{reader}"
scopes = ["read"]
rate_limit = "10/minute"
[[gateway.consumers]]
name = "writer"
key_sha256 = "{writer}"
scopes = ["read", "write"]
rate_limit = "50 per 2 seconds"
[[gateway.consumers]]
name = "ops-team_1"
key_sha256 = "{ops}"
scopes = ["admin"]
"""


@pytest.mark.parametrize("keyed", [True, False], ids=["consumers", "no-consumers"])
@pytest.mark.parametrize("token", ["internal-token-of-20-chars", None])
@pytest.mark.parametrize(
    "reference", ["eventgate.examples.inventory:app", "tests.e2e.apps.taskboard:app"]
)
def test_the_apisix_file_has_only_fields_of_apisix_schema(
    tmp_path: Path, keyed: bool, token: str | None, reference: str
) -> None:
    config = GatewayConfig()
    keys: dict[str, str] = {}
    if keyed:
        digests = {n: hashlib.sha256(k.encode()).hexdigest() for n, k in KEYS.items()}
        path = tmp_path / "eventgate.toml"
        path.write_text(CONFIG.format(ops=digests["ops-team_1"], **digests))
        config, keys = load_config(path), KEYS
    app = load_app(reference)
    urls = {
        "commands": ["http://10.0.0.1:8001", "http://10.0.0.2:8001"],
        "queries": ["https://queries.internal:8443", "https://queries-2.internal:8443"],
    }
    export = build_export(app.name, route_table(app), gateway_openapi(app, config), config,
                          urls, keys, internal_token=token)  # fmt: skip
    check_file(apisix_yaml(export))


def test_the_subset_catches_a_misspelt_field() -> None:
    with pytest.raises(AssertionError, match="hide_credential"):
        check(PLUGINS["key-auth"], {"header": "x-api-key", "hide_credential": True}, "key-auth")
    with pytest.raises(AssertionError, match="upstream"):
        check(ROUTE, {"uri": "/a", "upstream": "queries"}, "route")
