"""Command bodies: decoding, the framework's bounds, and representations that always parse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventgate import Command, InvalidCommand
from eventgate.eventstore.model import RecordedEvent
from eventgate.examples.inventory.domain import (
    CheckInItemsToInventory,
    CreateInventoryItem,
    InventoryItem,
    RenameInventoryItem,
)
from eventgate.examples.inventory.read_models import item_details
from eventgate.http.problems import HTTPProblem
from eventgate.http.xml import to_xml
from eventgate.resources.bodies import MAX_SAFE_INTEGER, decode_command


@dataclass(frozen=True)
class Line:
    item_id: str
    count: int


@dataclass(frozen=True)
class PlaceThing(Command):
    lines: tuple[Line, ...]
    creates: ClassVar[bool] = True


def status(command: type[Command], raw: bytes, stream: str | None = "s") -> int:
    try:
        decode_command(command, raw, stream, creates=command.creates)
    except HTTPProblem as e:
        return e.status
    return 202


def detail(command: type[Command], raw: bytes) -> str:
    with pytest.raises(HTTPProblem) as caught:
        decode_command(command, raw, "s", creates=command.creates)
    return str(caught.value.detail)


def test_fields_come_camel_case_and_the_id_from_the_url() -> None:
    command = decode_command(RenameInventoryItem, b'{"newName": "x", "id": "other"}', "item-1")
    assert command == RenameInventoryItem("item-1", "x")


def test_a_numeric_string_counts_as_the_number() -> None:
    assert decode_command(CheckInItemsToInventory, b'{"count": "230"}', "i").count == 230  # type: ignore[attr-defined]


def test_malformed_bodies_are_400_with_the_reason() -> None:
    assert status(CreateInventoryItem, b'{"name": "\xff"}') == 400
    assert "UTF-8" in detail(CreateInventoryItem, b'{"name": "\xff"}')
    assert "unpaired surrogate" in detail(CreateInventoryItem, b'{"name": "a\\ud800b"}')
    assert "NaN" in detail(CheckInItemsToInventory, b'{"count": NaN}')
    assert status(CreateInventoryItem, b"[1]") == 422  # JSON, but not an object


def test_invalid_values_are_422_naming_the_field_as_the_client_spells_it() -> None:
    assert "`$.newName`" in detail(RenameInventoryItem, b'{"newName": 5}')
    assert "`newName`" in detail(RenameInventoryItem, b"{}")
    assert "`$.lines[0].itemId`" in detail(PlaceThing, b'{"lines": [{"itemId": 1, "count": 1}]}')
    nested = decode_command(
        PlaceThing, b'{"lines": [{"itemId": "a", "count": 2}]}', None, creates=True
    )
    assert nested.lines == (Line("a", 2),)  # type: ignore[attr-defined]


@pytest.mark.parametrize("count", [MAX_SAFE_INTEGER + 1, 2**63 - 1, 10**33])
def test_integers_beyond_the_i_json_range_are_refused(count: int) -> None:
    raw = orjson.dumps({"count": count}) if count < 2**64 else f'{{"count": {count}}}'.encode()
    assert status(CheckInItemsToInventory, raw) == 422


def test_text_xml_cannot_carry_is_refused() -> None:
    for text in ("a\u0000b", "\u001b[31m", "\ufffe"):
        assert "`$.name`" in detail(CreateInventoryItem, orjson.dumps({"name": text}))


@given(st.text(max_size=300))
def test_every_accepted_name_has_a_json_and_an_xml_representation_that_parse(name: str) -> None:
    try:
        command = decode_command(
            CreateInventoryItem, orjson.dumps({"name": name}), None, creates=True
        )
        item = InventoryItem(command.id)
        item.handle(command)
    except (HTTPProblem, InvalidCommand):
        return
    event = item.collect_pending()[0]
    recorded = RecordedEvent(
        id="e",
        stream_id=command.id,
        stream_version=1,
        position=1,
        type=event.type_name,
        schema_version=1,
        data=event.to_data(),
        metadata={},
        time=datetime.now(UTC),
    )
    row = item_details.apply(None, recorded)
    assert row is not None
    assert orjson.loads(orjson.dumps(row))["name"] == name
    assert ET.fromstring(to_xml("InventoryItemDetails", row)).findtext("name") == name
