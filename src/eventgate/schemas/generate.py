"""JSON Schemas (draft 2020-12) of events' data, generated from the event classes.

msgspec turns the dataclass into a schema, as it does for the OpenAPI document's command
bodies; the top-level properties are then spelled as the data is stored (camelCase, see
`Event.to_data`), and the type is named by its stable `type_name`, not its class.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec

from eventgate.domain.messages import Event, camel_case

__all__ = ["DRAFT", "Schemas", "current_schemas", "event_schema"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schemas = dict[str, dict[int, dict[str, Any]]]
"""type name -> schema version -> JSON Schema of the event's data."""


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of `cls`'s stored data at its current schema version."""
    generated = msgspec.json.schema(cls)
    definitions: dict[str, Any] = generated.get("$defs", {})
    top = definitions.pop(generated["$ref"].rsplit("/", 1)[-1])
    schema: dict[str, Any] = {"$schema": DRAFT, "title": cls.type_name}
    if "description" in top:
        schema["description"] = inspect.cleandoc(top["description"])
    schema["type"] = "object"
    schema["properties"] = {camel_case(k): v for k, v in top.get("properties", {}).items()}
    schema["required"] = [camel_case(name) for name in top.get("required", [])]
    if definitions:
        schema["$defs"] = definitions
    return schema


def current_schemas(events: Iterable[type[Event]]) -> Schemas:
    """Each event type's schema at the version its class is now."""
    return {cls.type_name: {cls.schema_version: event_schema(cls)} for cls in events}
