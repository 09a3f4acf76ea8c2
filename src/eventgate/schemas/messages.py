"""The messages of the AsyncAPI document: each event type as a structured CloudEvent (SSE,
WebSocket, webhooks) and in binary mode (NATS), and the WebSocket protocol's frames."""

from __future__ import annotations

import re
from typing import Any

from eventgate.schemas.generate import Schemas

__all__ = ["component_name", "event_components", "websocket_messages"]

_NAME = re.compile(r"[^A-Za-z0-9._-]")
_SCHEMAS = "#/components/schemas/"
_STRING = {"type": "string"}
_SUBSCRIPTION = {"type": "string", "minLength": 1, "maxLength": 64}
_NAME_OR_GLOB = {"type": "string", "minLength": 1}


def component_name(type_name: str) -> str:
    """`type_name` as an AsyncAPI component key."""
    return _NAME.sub("_", type_name)


def event_components(source: str, schemas: Schemas) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schemas, messages) of the components: per event type its data, its CloudEvent, and
    the messages `<type>` (structured) and `<type>.binary` (the broker's)."""
    components: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for type_name, versions in sorted(schemas.items()):
        ((version, schema),) = versions.items()
        name = component_name(type_name)
        components[name] = _inlined(schema)
        components[f"{name}.cloudevent"] = _cloudevent(source, type_name, version, name)
        messages[name] = {
            "name": type_name,
            "title": f"{type_name} v{version}",
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"{_SCHEMAS}{name}.cloudevent"},
        }
        messages[f"{name}.binary"] = {
            "name": type_name,
            "title": f"{type_name} v{version} (CloudEvents binary mode)",
            "contentType": "application/json",
            "headers": _binary_headers(source, type_name, version),
            "payload": {"$ref": _SCHEMAS + name},
        }
    return components, messages


def _cloudevent(source: str, type_name: str, version: int, data: str) -> dict[str, Any]:
    """The structured CloudEvent of one type, as `streaming.cloudevents.structured` makes it."""
    return {
        "type": "object",
        "description": f"{type_name} as a CloudEvent 1.0 (structured mode)",
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {**_STRING, "description": "the event's id"},
            "source": {"const": source},
            "type": {"const": type_name},
            "subject": {**_STRING, "description": "the stream (aggregate) id"},
            "time": {**_STRING, "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "sequence": {**_STRING, "pattern": "^[0-9]+$",
                         "description": "the store's global position (resume after it)"},
            "streamversion": {"type": "integer", "description": "the event's place in its stream"},
            "schemaversion": {"type": "integer", "description": f"{version} when current"},
            "correlationid": _STRING,
            "causationid": _STRING,
            "traceparent": {**_STRING, "description": "W3C trace context (distributed tracing)"},
            "tracestate": _STRING,
            "data": {"$ref": _SCHEMAS + data},
        },
        "required": ["specversion", "id", "source", "type", "subject", "time",
                     "datacontenttype", "sequence", "streamversion", "schemaversion", "data"],
    }  # fmt: skip


def _binary_headers(source: str, type_name: str, version: int) -> dict[str, Any]:
    """The NATS headers of one type (broker/wire.py): the attributes as `ce-` headers."""
    properties = {
        "ce-specversion": {"const": "1.0"},
        "ce-id": _STRING,
        "ce-source": {"const": source},
        "ce-type": {**_STRING, "description": f"{type_name}, percent-encoded"},
        "ce-subject": {**_STRING, "description": "the stream id, percent-encoded"},
        "ce-time": {**_STRING, "format": "date-time"},
        "ce-sequence": {**_STRING, "pattern": "^[0-9]+$"},
        "ce-streamversion": {**_STRING, "pattern": "^[0-9]+$"},
        "ce-schemaversion": {**_STRING, "description": f"{version} when current"},
        "ce-correlationid": _STRING,
        "ce-causationid": _STRING,
        "ce-traceparent": _STRING,
        "ce-tracestate": _STRING,
        "content-type": {"const": "application/json"},
        "Nats-Msg-Id": {**_STRING, "description": "the event's id (JetStream deduplication)"},
        "Eventgate-Metadata": {**_STRING, "description": "the event's metadata as JSON"},
    }
    optional = ("ce-correlationid", "ce-causationid", "ce-traceparent", "ce-tracestate")
    required = [k for k in properties if k not in optional]
    return {"type": "object", "properties": properties, "required": required}


def websocket_messages(types: list[str]) -> dict[str, Any]:
    """The frames of the WebSocket protocol (streaming/websocket.py), by name."""
    events = [{"$ref": f"{_SCHEMAS}{component_name(t)}.cloudevent"} for t in types]
    return {
        "subscribe": _frame("subscribe", "follow events (client to server)", {
            "subscription": _SUBSCRIPTION,
            "types": {"type": "array", "items": _NAME_OR_GLOB, "maxItems": 50,
                      "description": "type names or globs (absent: all)"},
            "streams": {"type": "array", "items": _NAME_OR_GLOB, "maxItems": 50,
                        "description": "stream ids (absent: all)"},
            "after": {"oneOf": [{"type": "integer", "minimum": 0},
                                {"type": "string", "pattern": "^[0-9]{1,19}$"}],
                      "description": "the sequence of the last event seen (absent or 0: from"
                                     " the first event of the log)"},
        }, ["subscription"]),
        "unsubscribe": _frame("unsubscribe", "stop a subscription (client to server)",
                              {"subscription": _SUBSCRIPTION}, ["subscription"]),
        "subscribed": _frame("subscribed", "a subscription is live",
                             {"subscription": _SUBSCRIPTION}, ["subscription"]),
        "unsubscribed": _frame("unsubscribed", "a subscription has ended",
                               {"subscription": _SUBSCRIPTION}, ["subscription"]),
        "event": _frame("event", "an event of a subscription", {
            "subscription": _SUBSCRIPTION,
            "event": {"oneOf": events} if events else {"type": "object"},
        }, ["subscription", "event"]),
        "error": _frame("error", "a problem with a frame or a subscription; with `sequence`,"
                        " an event too big for a frame (read it over SSE), skipped", {
            "subscription": {"type": ["string", "null"]},
            "sequence": {"type": "string"},
            "problem": {"$ref": _SCHEMAS + "Problem"},
        }, ["subscription", "problem"]),
    }  # fmt: skip


def _frame(
    kind: str, summary: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "name": kind,
        "summary": summary,
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "properties": {"type": {"const": kind}, **properties},
            "required": ["type", *required],
        },
    }


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its `$defs` put where they are referenced (AsyncAPI resolves `#/...`
    against the whole document), without `$schema`; a recursive reference becomes `{}`."""
    definitions = schema.get("$defs", {})

    def inline(value: Any, seen: frozenset[str]) -> Any:
        if isinstance(value, list):
            return [inline(item, seen) for item in value]
        if not isinstance(value, dict):
            return value
        reference = value.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            name = reference.removeprefix("#/$defs/")
            return {} if name in seen else inline(definitions.get(name, {}), seen | {name})
        return {k: inline(v, seen) for k, v in value.items() if k not in ("$schema", "$defs")}

    inlined: dict[str, Any] = inline(schema, frozenset())
    return inlined
