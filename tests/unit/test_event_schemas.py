"""Event schemas from the event classes, and which changes to them break readers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventgate import Event
from eventgate.schemas.compatibility import breaking_changes
from eventgate.schemas.generate import DRAFT, Schemas, current_schemas, event_schema


@dataclass(frozen=True)
class Nested:
    sku: str
    quantity: int


@dataclass(frozen=True)
class ItemRenamed(Event):
    id: str
    new_name: str
    lines: list[Nested]
    note: str | None = None


def schemas(*classes: type[Event]) -> Schemas:
    return current_schemas(classes)


def changed(**fields: Any) -> type[Event]:
    """An `ItemRenamed` (same type name) with `fields` as its dataclass fields."""
    namespace = {"__annotations__": {k: v[0] for k, v in fields.items()}}
    namespace |= {k: v[1] for k, v in fields.items() if len(v) > 1}
    cls = type("ItemRenamed", (Event,), {"type_name": "ItemRenamed", **namespace})
    return dataclass(frozen=True)(cls)


RELEASED = schemas(ItemRenamed)


def never(type_name: str, version: int) -> bool:
    return False


def test_the_schema_spells_fields_as_stored_and_names_the_type() -> None:
    schema = event_schema(ItemRenamed)
    assert schema["$schema"] == DRAFT and schema["title"] == "ItemRenamed"
    assert list(schema["properties"]) == ["id", "newName", "lines", "note"]
    assert schema["required"] == ["id", "newName", "lines"]
    assert schema["properties"]["lines"]["items"] == {"$ref": "#/$defs/Nested"}
    assert schema["$defs"]["Nested"]["required"] == ["sku", "quantity"]


def test_the_same_classes_are_compatible() -> None:
    assert breaking_changes(RELEASED, schemas(ItemRenamed), never) == []


def test_an_optional_field_added_is_compatible() -> None:
    wider = changed(id=(str,), new_name=(str,), lines=(list[Nested],), note=(str | None, None),
                    tag=(str, "x"))  # fmt: skip
    assert breaking_changes(RELEASED, schemas(wider), never) == []


def test_a_field_renamed_or_removed_breaks_readers() -> None:
    renamed = changed(id=(str,), name=(str,), lines=(list[Nested],), note=(str | None, None))
    assert breaking_changes(RELEASED, schemas(renamed), never) == [
        "ItemRenamed v1: field newName removed or renamed",
        "ItemRenamed v1: field name is a new required field (stored events lack it)",
    ]


def test_a_type_changed_breaks_readers_even_inside_a_nested_class() -> None:
    retyped = changed(id=(int,), new_name=(str,), lines=(list[Nested],), note=(str | None, None))
    [problem] = breaking_changes(RELEASED, schemas(retyped), never)
    assert problem.startswith('ItemRenamed v1: field id changed type: {"type":"string"} ->')

    @dataclass(frozen=True)
    class Nested2:
        sku: str
        quantity: float

    nested = changed(id=(str,), new_name=(str,), lines=(list[Nested2],), note=(str | None, None))
    [problem] = breaking_changes(RELEASED, schemas(nested), never)
    assert "field lines changed type" in problem and '"number"' in problem


def test_a_field_made_required_or_optional_breaks_readers() -> None:
    required = changed(id=(str,), new_name=(str,), lines=(list[Nested],), note=(str | None,))
    optional = changed(
        id=(str,), lines=(list[Nested],), new_name=(str, ""), note=(str | None, None)
    )
    assert breaking_changes(RELEASED, schemas(required), never) == [
        "ItemRenamed v1: field note became required (stored events lack it)"
    ]
    assert breaking_changes(RELEASED, schemas(optional), never) == [
        "ItemRenamed v1: field newName is no longer required (readers expect it)"
    ]


def test_a_type_removed_breaks_readers_and_a_new_one_does_not() -> None:
    @dataclass(frozen=True)
    class Other(Event):
        id: str

    assert breaking_changes(RELEASED, schemas(Other), never) == [
        "ItemRenamed: event type removed (no event class is stored as ItemRenamed)"
    ]
    assert breaking_changes(RELEASED, schemas(ItemRenamed, Other), never) == []


def test_a_bumped_version_is_covered_only_by_upcasters_from_the_released_one() -> None:
    v3 = changed(id=(str,), name=(str,))
    v3.schema_version = 3
    steps = {("ItemRenamed", 1)}
    assert breaking_changes(RELEASED, schemas(v3), lambda t, v: (t, v) in steps) == [
        "ItemRenamed: schema version 1 -> 3 but no upcaster from version 2"
    ]
    steps.add(("ItemRenamed", 2))
    assert breaking_changes(RELEASED, schemas(v3), lambda t, v: (t, v) in steps) == []


def test_an_upcaster_deleted_after_its_version_was_released_breaks_readers() -> None:
    v2 = changed(id=(str,), name=(str,))
    v2.schema_version = 2
    released = {"ItemRenamed": {1: event_schema(ItemRenamed), 2: event_schema(v2)}}
    assert breaking_changes(released, schemas(v2), never) == [
        "ItemRenamed: schema version 1 -> 2 but no upcaster from version 1"
    ]
    assert breaking_changes(released, schemas(v2), lambda t, v: v == 1) == []


def test_a_version_below_the_released_one_breaks_readers() -> None:
    released = {"ItemRenamed": {2: event_schema(ItemRenamed)}}
    assert breaking_changes(released, schemas(ItemRenamed), never) == [
        "ItemRenamed: schema version 1 is below the released 2"
    ]
