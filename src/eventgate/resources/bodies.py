"""Command bodies: JSON request bodies decoded and validated into the app's command types.

msgspec decodes and checks types and declared constraints (`Annotated[int, Meta(gt=0)]`);
a numeric string such as `"230"` counts as the number where its form is the documented one
(`numeric_string_pattern`), so the OpenAPI document and the server agree exactly. Keys are
camelCase in JSON and snake_case in Python, as in stored events. On top of the declared
constraints every command gets the framework's: integers within the I-JSON safe range
(RFC 7493), finite floats, and text that XML 1.0 can carry, so every accepted command can
be stored, projected and represented in both formats. Malformed bodies are 400, invalid
values 422 naming the field, as `$.field` paths in the body's own spelling.
"""

from __future__ import annotations

import dataclasses
import functools
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

__all__ = [
    "MAX_SAFE_INTEGER",
    "MAX_TEXT",
    "XML_TEXT_PATTERN",
    "body_fields",
    "decode_command",
    "integer_bounds",
    "numeric_string_pattern",
    "reads_body",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON parser reads exactly (RFC 7493 §2.2)."""
MAX_TEXT = 10_000
"""The longest text a field takes unless its type declares `Meta(max_length=...)`."""
XML_TEXT_PATTERN = "^[\\t\\n\\r\\u0020-\\uD7FF\\uE000-\\uFFFD\\U00010000-\\U0010FFFF]*$"
"""JSON Schema for text XML 1.0 can carry (what `_NOT_XML` refuses), for the OpenAPI document."""

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


def reads_body(commands: Sequence[type[Command]]) -> bool:
    """Whether any of `commands` takes fields from the body."""
    return any(body_fields(command) for command in commands)


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
    data = _json_object(raw) if body_fields(command) or raw.strip() else {}
    if creates:
        stream_id = _client_id(data["id"]) if "id" in data else str(uuid_utils.uuid4())
    fields = _prepare({k: v for k, v in data.items() if k != "id"}, command, "$")
    try:
        decoded = msgspec.convert({**fields, "id": stream_id}, type=command)
    except msgspec.ValidationError as e:
        raise HTTPProblem(422, _camel_message(str(e))) from None
    _check_values(decoded, "$")
    return decoded


def _prepare(value: Any, kind: Any, path: str) -> Any:
    """`value` as msgspec should convert it to `kind`: the keys of every object that becomes
    a dataclass in snake_case (other mappings keep theirs), a numeric string where an integer
    is expected turned into the number when it has the documented form, and text checked
    against the default length bound where none is declared."""
    origin, arguments = get_origin(kind), get_args(kind)
    metas = [a for a in arguments[1:] if isinstance(a, msgspec.Meta)] if origin is Annotated else []
    base = arguments[0] if origin is Annotated else kind
    if base is int and isinstance(value, str):
        pattern = numeric_string_pattern(*integer_bounds(metas))
        return int(value) if pattern is not None and re.fullmatch(pattern, value) else value
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)  # JSON Schema's integer is a value: 21981.0 is one
    if base is str and isinstance(value, str):
        if len(value) > MAX_TEXT and not any(m.max_length is not None for m in metas):
            raise HTTPProblem(422, f"text may be at most {MAX_TEXT} characters - at `{path}`")
        return value
    if origin is Annotated:
        return _prepare(value, base, path)
    if isinstance(value, dict) and isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        converted = {snake_case(k): v for k, v in value.items()}
        return {k: _prepare(v, hints[k], f"{path}.{camel_case(k)}") if k in hints else v
                for k, v in converted.items()}  # fmt: skip
    if isinstance(value, list) and origin in (list, tuple, set, frozenset, Sequence):
        item = arguments[0] if arguments else Any
        return [_prepare(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and origin in (dict, Mapping) and len(arguments) == 2:
        return {k: _prepare(v, arguments[1], f"{path}.{k}") for k, v in value.items()}
    if origin in (Union, UnionType):
        return _prepare_union(value, arguments, path)
    return value


def _prepare_union(value: Any, arguments: tuple[Any, ...], path: str) -> Any:
    classes = [a for a in arguments if dataclasses.is_dataclass(a)]
    if len(classes) == 1 and isinstance(value, dict):
        return _prepare(value, classes[0], path)
    lists = [a for a in arguments if get_origin(a) in (list, tuple, set, frozenset)]
    if len(lists) == 1 and isinstance(value, list):
        return _prepare(value, lists[0], path)
    return value


def integer_bounds(metas: Sequence[msgspec.Meta]) -> tuple[int, int]:
    """The smallest and largest integer a field takes: its declared bounds within I-JSON's."""
    lower, upper = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER
    for meta in metas:
        if isinstance(meta.ge, int | float):
            lower = max(lower, math.ceil(meta.ge))
        if isinstance(meta.gt, int | float):
            lower = max(lower, math.floor(meta.gt) + 1)
        if isinstance(meta.le, int | float):
            upper = min(upper, math.floor(meta.le))
        if isinstance(meta.lt, int | float):
            upper = min(upper, math.ceil(meta.lt) - 1)
    return lower, upper


def numeric_string_pattern(lower: int, upper: int) -> str | None:
    """The decimal strings read as integers in [`lower`, `upper`] (reference 004 sends
    `"230"`): canonical numerals short enough to be within the bounds whatever their digits,
    so the documented pattern and what the server accepts are the same set. None when no
    such form exists (a lower bound above 1, say): then only JSON numbers are accepted."""
    parts = []
    positive_digits = len(str(upper)) - 1 if upper >= 1 else 0
    if lower <= 1 <= upper:
        if positive_digits >= 1:
            parts.append(f"[1-9][0-9]{{0,{positive_digits - 1}}}")
        elif upper >= 1:
            parts.append(f"[1-{min(upper, 9)}]")
    if lower <= 0 <= upper:
        parts.append("0")
    if lower <= -1 <= upper:
        negative_digits = len(str(-lower)) - 1
        if negative_digits >= 1:
            parts.append(f"-[1-9][0-9]{{0,{negative_digits - 1}}}")
    if not parts or lower > 1:
        return None
    return "^(" + "|".join(parts) + ")$"


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
        for name in _field_names(value.__class__):
            if path != "$" or name != "id":
                _check_values(getattr(value, name), f"{path}.{camel_case(name)}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_values(key, path)
            _check_values(item, f"{path}.{key}")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            _check_values(item, f"{path}[{index}]")


@functools.cache  # dataclass types: declared, so few
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def _camel_message(message: str) -> str:
    """msgspec names fields as Python does; clients know them in camelCase."""
    return _BACKTICKED.sub(lambda m: f"`{_camel_path(m.group(1))}`", message)


def _camel_path(text: str) -> str:
    return re.sub(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", lambda m: camel_case(m.group()), text)
