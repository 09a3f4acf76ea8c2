"""The AsyncAPI 3.0 document of an app: every channel its events reach clients on.

Channels: Server-Sent Events (`/api/events`, each item's `<item path>/events`), the
WebSocket (`/api/events/ws`), webhooks (POSTs to each subscription's URL) and, when a broker
is configured, one NATS subject per event type. Each event type is one message whose payload
is its CloudEvent (data: the type's JSON Schema, as the registry serves it).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from eventgate.app import App
from eventgate.resources.openapi import PROBLEM_SCHEMA
from eventgate.schemas.generate import current_schemas
from eventgate.schemas.messages import component_name, event_components, websocket_messages
from eventgate.streaming.cloudevents import source_of, token_of
from eventgate.streaming.sse import EVENTS_PATH
from eventgate.streaming.websocket import (
    EVENTS_SOCKET_PATH,
    MAX_MESSAGE,
    MAX_SUBSCRIPTIONS,
    PROTOCOL,
)

__all__ = ["asyncapi_document"]

_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")
_WEBHOOK_HEADERS = {
    "type": "object",
    "properties": {
        "webhook-id": {"type": "string", "description": "msg_<subscription id>_<event id>:"
                       " the same on every retry of one event to one subscription"
                       " (deduplicate on it)"},
        "webhook-timestamp": {"type": "string", "pattern": "^[0-9]+$",
                              "description": "seconds since the epoch, when signed"},
        "webhook-signature": {"type": "string", "description": "v1,<base64 HMAC-SHA256 of"
                              " id.timestamp.body with the subscription's secret>; two"
                              " space-separated while a rotated secret's grace lasts"},
        "content-type": {"const": "application/cloudevents+json"},
    },
    "required": ["webhook-id", "webhook-timestamp", "webhook-signature"],
}  # fmt: skip


_DISCONNECTED = {
    "name": "eventgate.disconnected",
    "summary": "the last message to a client too slow to take events (SSE `event:` name)",
    "payload": {"type": "object", "properties": {"reason": {"type": "string"}},
                "required": ["reason"]},
}  # fmt: skip


def asyncapi_document(
    app: App, *, broker_url: str | None = None, secured: bool = False
) -> dict[str, Any]:
    """AsyncAPI 3.0.0 of `app`'s event channels; the NATS ones when `broker_url` is set."""
    schemas = current_schemas(app.events)
    types = sorted(schemas)
    source = source_of(app.name)
    components, messages = event_components(source, schemas)
    components["Problem"] = PROBLEM_SCHEMA
    messages |= {f"ws.{k}": v for k, v in websocket_messages(types).items()}
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"eventgate {app.name}",
            "version": "1",
            "description": f"The events of {app.name} as CloudEvents 1.0 (source {source}):"
            " live over Server-Sent Events and WebSocket, pushed to webhooks"
            + (", published to NATS" if broker_url else "")
            + ". Each type's data schema is also at /api/schemas/{type}/{version}.",
        },
        "defaultContentType": "application/json",
        "servers": _servers(broker_url, secured),
        "channels": {},
        "operations": {},
        "components": {"schemas": components, "messages": messages},
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "apiKey": {"type": "httpApiKey", "name": "X-API-Key", "in": "header"},
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKeyQuery": {"type": "httpApiKey", "name": "api_key", "in": "query",
                            "description": "the event streams only (browsers' EventSource and"
                            " WebSocket cannot send headers)"},
        }  # fmt: skip
    _add_sse(document, app, types)
    _add_websocket(document)
    _add_webhooks(document, types)
    if broker_url is not None:
        _add_nats(document, app, types)
    return document


def _servers(broker_url: str | None, secured: bool) -> dict[str, Any]:
    host = {"host": {"default": "localhost:8000", "description": "the gateway's address"}}
    schemes = ("apiKey", "bearer", "apiKeyQuery") if secured else ()
    security = [{"$ref": f"#/components/securitySchemes/{scheme}"} for scheme in schemes]
    servers: dict[str, Any] = {
        "gateway": {"host": "{host}", "protocol": "http", "variables": host,
                    "description": "the gateway: Server-Sent Events (scope read)"},
        "gatewayWebSocket": {"host": "{host}", "protocol": "ws", "variables": host,
                             "description": "the gateway: WebSocket (scope read)"},
        "webhookSubscriber": {"host": "{subscriber}", "protocol": "https",
                              "variables": {"subscriber": {"description":
                                            "the host of each subscription's URL"}},
                              "description": "a webhook subscription's URL (/admin/webhooks)"},
    }  # fmt: skip
    for name in ("gateway", "gatewayWebSocket"):
        if security:
            servers[name]["security"] = security
    if broker_url is not None:
        address = urlsplit(broker_url.split(",", 1)[0])  # host and port only: no credentials
        port = f":{address.port}" if address.port else ""
        servers["nats"] = {"host": f"{address.hostname}{port}", "protocol": "nats",
                           "description": "NATS JetStream (CloudEvents binary mode)"}  # fmt: skip
    return servers


def _add_channel(
    document: dict[str, Any], name: str, channel: dict[str, Any], action: str,
    messages: list[str], summary: str,
) -> None:  # fmt: skip
    """A channel carrying component `messages`, and the operation that sends or receives them."""
    channel["messages"] = {m: {"$ref": f"#/components/messages/{m}"} for m in messages}
    document["channels"][name] = channel
    document["operations"][f"{action}.{name}"] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{name}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in messages],
    }


def _add_sse(document: dict[str, Any], app: App, types: list[str]) -> None:
    document["components"]["messages"]["sse.disconnected"] = _DISCONNECTED
    messages = [*(component_name(t) for t in types), "sse.disconnected"]
    server = [{"$ref": "#/servers/gateway"}]
    sse = ("Server-Sent Events: `id:` the store position, `data:` the CloudEvent. Resume with"
           " Last-Event-ID; filter with ?type= (globs) and ?stream=.")  # fmt: skip
    _add_channel(document, "events", {"address": EVENTS_PATH, "servers": server,
                 "description": sse}, "send", messages, "every event, live")  # fmt: skip
    for resource in app.resources:
        address = f"{resource.item_paths[0]}/events"
        parameters = {p: {"description": f"the item's {p}"} for p in _PARAMETER.findall(address)}
        channel = {"address": address, "servers": server, "parameters": parameters,
                   "description": sse}  # fmt: skip
        _add_channel(document, f"events.{component_name(resource.name)}", channel, "send",
                     messages, f"the events of one of {resource.name}")  # fmt: skip


def _add_websocket(document: dict[str, Any]) -> None:
    channel = {
        "address": EVENTS_SOCKET_PATH,
        "servers": [{"$ref": "#/servers/gatewayWebSocket"}],
        "description": f"GET {EVENTS_SOCKET_PATH}, optional subprotocol {PROTOCOL}; JSON text"
        f" frames, up to {MAX_SUBSCRIPTIONS} subscriptions per connection, each with its events"
        " in store order. An error frame leaves the connection open. Close codes: 1008 the"
        " client took too long to take a frame or kept sending past the message rate,"
        f" 1009 a message over {MAX_MESSAGE} bytes,"
        " 1011 the store"
        " could not be read, 1012 the server is stopping, 1013 past the client limit or the"
        " consumer's stream limit; resume"
        " each subscription with `after`.",
    }
    incoming = ["ws.subscribe", "ws.unsubscribe"]
    outgoing = ["ws.subscribed", "ws.unsubscribed", "ws.event", "ws.error"]
    _add_channel(document, "websocket", channel, "receive", [*incoming, *outgoing],
                 "subscribe and unsubscribe")  # fmt: skip
    operations = document["operations"]
    operations["receive.websocket"]["messages"] = [
        {"$ref": f"#/channels/websocket/messages/{m}"} for m in incoming
    ]
    operations["send.websocket"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/websocket"},
        "summary": "answers, events and errors",
        "messages": [{"$ref": f"#/channels/websocket/messages/{m}"} for m in outgoing],
    }


def _add_webhooks(document: dict[str, Any], types: list[str]) -> None:
    messages = []
    for type_name in types:
        name = component_name(type_name)
        structured = document["components"]["messages"][name]
        document["components"]["messages"][f"{name}.webhook"] = {
            **structured, "headers": _WEBHOOK_HEADERS,
            "title": f"{structured['title']} (webhook POST)",
        }  # fmt: skip
        messages.append(f"{name}.webhook")
    channel = {
        "address": None,
        "servers": [{"$ref": "#/servers/webhookSubscriber"}],
        "description": "POST to each subscription's URL (made at /admin/webhooks): the"
        " CloudEvent as the body, signed as Standard Webhooks say; any 2xx acknowledges.",
    }
    _add_channel(document, "webhooks", channel, "send", messages, "deliver to subscribers")


def _add_nats(document: dict[str, Any], app: App, types: list[str]) -> None:
    server = [{"$ref": "#/servers/nats"}]
    prefix = f"eventgate.{token_of(app.name)}"
    for type_name in types:
        name = component_name(type_name)
        channel = {
            "address": f"{prefix}.{{partition}}.{token_of(type_name)}",
            "servers": server,
            "parameters": {"partition": {"description": "the stream's partition"}},
            "description": f"stream EVENTGATE_{token_of(app.name).upper()}",
        }
        _add_channel(document, f"nats.{name}", channel, "send", [f"{name}.binary"],
                     f"publish {type_name}")  # fmt: skip
