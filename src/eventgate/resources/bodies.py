"""Command bodies: JSON request bodies decoded and validated into the app's command types.

msgspec decodes and checks types and declared constraints (`Annotated[int, Meta(gt=0)]`),
in its lax mode so that a numeric string such as `"230"` counts as the number. Keys are
camelCase in JSON and snake_case in Python, as in stored events. On top of the declared
constraints every command gets the framework's: integers within the I-JSON safe range
(RFC 7493), finite floats, and text that XML 1.0 can carry, so every accepted command can
be stored, projected and represented in both formats. Malformed bodies are 400, invalid
values 422 naming the field, as `$.field` paths in the body's own spelling.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

import msgspec
import uuid_utils

from eventgate.domain.messages import Command, camel_case, snake_case
from eventgate.http.problems import HTTPProblem

__all__ = ["MAX_SAFE_INTEGER", "body_fields", "decode_command"]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON parser reads exactly (RFC 7493 §2.2)."""

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_BACKTICKED = re.compile(r"`([^`]*)`")
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|(?<![0-9a-fA-F]{2})\\u[dD][c-fC-F]"
)


_FIELDS: dict[type, tuple[str, ...]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def body_fields(command: type[Command]) -> tuple[str, ...]:
    """The fields a body carries for `command`: every field but the id, which the URL gives."""
    found = _FIELDS.get(command)
    if found is None:
        found = _FIELDS[command] = tuple(
            f.name for f in dataclasses.fields(command) if f.name != "id"
        )
    return found


def _hints(kind: type) -> dict[str, Any]:
    """The type hints of a dataclass, resolved once (they are read on every request)."""
    found = _HINTS.get(kind)
    if found is None:
        found = _HINTS[kind] = get_type_hints(kind, include_extras=True)
    return found


def decode_command(
    command: type[Command], raw: bytes, stream_id: str | None, *, creates: bool = False
) -> Command:
    """The command in body `raw`, aimed at `stream_id` (a creating command without one takes
    the body's optional UUID `id`, else a new one). Raises 400/422 problems."""
    data = _json_object(raw) if body_fields(command) or (creates and raw.strip()) else {}
    if creates:
        stream_id = _client_id(data.get("id"))
    fields = _python_keys({k: v for k, v in data.items() if k != "id"}, command)
    try:
        decoded = msgspec.convert({**fields, "id": stream_id}, type=command, strict=False)
    except msgspec.ValidationError as e:
        raise HTTPProblem(422, _camel_message(str(e))) from None
    _check_values(decoded, "$")
    return decoded


def _python_keys(value: Any, kind: Any) -> Any:
    """`value` with the keys of every object that becomes a dataclass in snake_case; other
    mappings keep their keys as sent."""
    origin, arguments = get_origin(kind), get_args(kind)
    if origin is Annotated:
        return _python_keys(value, arguments[0])
    if isinstance(value, dict) and isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        converted = {snake_case(k): v for k, v in value.items()}
        return {k: _python_keys(v, hints[k]) if k in hints else v for k, v in converted.items()}
    if isinstance(value, list) and origin in (list, tuple, set, frozenset, Sequence):
        return [_python_keys(item, arguments[0] if arguments else Any) for item in value]
    if isinstance(value, dict) and origin in (dict, Mapping) and len(arguments) == 2:
        return {k: _python_keys(v, arguments[1]) for k, v in value.items()}
    if origin in (Union, UnionType):
        classes = [a for a in arguments if dataclasses.is_dataclass(a)]
        if len(classes) == 1 and isinstance(value, dict):
            return _python_keys(value, classes[0])
        lists = [a for a in arguments if get_origin(a) in (list, tuple, set, frozenset)]
        if len(lists) == 1 and isinstance(value, list):
            return _python_keys(value, lists[0])
    return value


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise HTTPProblem(400, f"the body is not valid UTF-8 (byte {e.start})") from None
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise HTTPProblem(400, f"malformed JSON: {_why_malformed(text, e)}") from None
    if not isinstance(data, dict):
        raise HTTPProblem(422, "the body must be a JSON object")
    return data


def _why_malformed(text: str, error: msgspec.DecodeError) -> str:
    """msgspec's reason, unless the text is JSON but for what msgspec rightly refuses."""
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        return f"a string holds an unpaired surrogate {found.group(0)}, which is not Unicode"
    try:
        json.loads(text)
    except ValueError:
        return str(error)
    return "NaN and Infinity are not JSON numbers"


def _client_id(raw: object) -> str:
    if raw is None:
        return str(uuid_utils.uuid4())
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return str(uuid.UUID(raw))
    except ValueError:
        raise HTTPProblem(422, "id must be a UUID - at `$.id`") from None


def _check_values(value: object, path: str) -> None:
    """The framework's bounds on every decoded value, with the path of the first offender."""
    if isinstance(value, str):
        bad = _NOT_XML.search(value)
        if bad is not None:
            raise HTTPProblem(422, f"text may not hold the character U+{ord(bad.group()):04X}"
                              f" - at `{path}`")  # fmt: skip
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise HTTPProblem(
                422, f"integers must be within ±{MAX_SAFE_INTEGER} (RFC 7493) - at `{path}`"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise HTTPProblem(422, f"numbers must be finite - at `{path}`")
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if path != "$" or f.name != "id":
                _check_values(getattr(value, f.name), f"{path}.{camel_case(f.name)}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_values(key, path)
            _check_values(item, f"{path}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check_values(item, f"{path}[{index}]")


def _camel_message(message: str) -> str:
    """msgspec names fields as Python does; clients know them in camelCase."""
    return _BACKTICKED.sub(lambda m: f"`{_camel_path(m.group(1))}`", message)


def _camel_path(text: str) -> str:
    return re.sub(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", lambda m: camel_case(m.group()), text)
