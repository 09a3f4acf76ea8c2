"""XML representations mirroring the JSON ones, field for field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

__all__ = ["to_xml"]


def to_xml(root: str, body: Mapping[str, Any]) -> bytes:
    """`{"a": 1, "items": [{"id": "x"}]}` -> `<root><a>1</a><items><item><id>x</id>...`."""
    element = Element(root)
    _fill(element, body)
    document: bytes = tostring(element, encoding="utf-8", xml_declaration=True)
    # A parser turns a literal CR into LF (XML 1.0 §2.11): only a reference keeps it.
    return document.replace(b"\r", b"&#13;")


def _fill(element: Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(SubElement(element, key), child)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for child in value:
            _fill(SubElement(element, "item"), child)
    elif value is None:
        element.set("nil", "true")
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = str(value)
