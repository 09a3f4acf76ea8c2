"""`eventgate schemas check` as CI runs it: exit 0 when the code matches the released schemas,
1 with one line per change that breaks readers, 2 when there is nothing to compare with."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from eventgate.examples import inventory

INVENTORY = Path(inventory.__file__).parent


def schemas(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "eventgate.cli", "schemas", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def copy_of_inventory(tmp_path: Path) -> Path:
    """The inventory example as the package `shop` in `tmp_path`, its released file too."""
    package = tmp_path / "shop"
    shutil.copytree(INVENTORY, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_examples_match_their_released_schemas(tmp_path: Path) -> None:
    for app in ("eventgate.examples.inventory:app", "eventgate.examples.orders:app"):
        checked = schemas(tmp_path, "check", "--app", app)
        assert checked.returncode == 0, checked.stderr
        assert "are compatible with" in checked.stdout and "not released yet" not in checked.stdout


def test_a_renamed_field_fails_the_check_with_one_line_per_problem(tmp_path: Path) -> None:
    package = copy_of_inventory(tmp_path)
    edit(package / "domain.py", "    id: str\n    new_name: str\n", "    id: str\n    title: str\n")
    edit(package / "domain.py", "case InventoryItemRenamed(new_name=new_name)",
         "case InventoryItemRenamed(title=new_name)")  # fmt: skip
    checked = schemas(tmp_path, "check", "--app", "shop:app")
    assert checked.returncode == 1, checked.stdout
    lines = checked.stderr.splitlines()
    assert lines[:2] == [
        "breaking: InventoryItemRenamed v1: field newName removed or renamed",
        "breaking: InventoryItemRenamed v1: field title is a new required field (stored events"
        " lack it)",
    ]
    assert lines[2].startswith("2 change(s) break readers of ") and len(lines) == 3

    # release refuses it too, unless forced
    refused = schemas(tmp_path, "release", "--app", "shop:app")
    assert refused.returncode == 1 and "breaking:" in refused.stderr


def test_a_bumped_version_with_an_upcaster_passes_and_release_keeps_the_old_one(
    tmp_path: Path,
) -> None:
    package = copy_of_inventory(tmp_path)
    renamed = "class InventoryItemRenamed(Event):\n"
    bumped = f"{renamed}    schema_version: ClassVar[int] = 2\n    id: str\n    title: str\n"
    edit(package / "domain.py", f"{renamed}    id: str\n    new_name: str\n", bumped)
    edit(package / "domain.py", "case InventoryItemRenamed(new_name=new_name)",
         "case InventoryItemRenamed(title=new_name)")  # fmt: skip
    uncovered = schemas(tmp_path, "check", "--app", "shop:app")
    assert uncovered.returncode == 1
    assert "breaking: InventoryItemRenamed: schema version 1 -> 2 but no upcaster from version 1"\
        in uncovered.stderr  # fmt: skip

    edit(package / "__init__.py", "app = inventory_app()\n", """app = inventory_app()
app.upcasters.register(
    "InventoryItemRenamed", 1, lambda d: {"id": d["id"], "title": d["newName"]}
)
""")  # fmt: skip
    covered = schemas(tmp_path, "check", "--app", "shop:app")
    assert covered.returncode == 0, covered.stderr
    assert "not released yet: InventoryItemRenamed v2" in covered.stdout

    released = schemas(tmp_path, "release", "--app", "shop:app")
    assert released.returncode == 0, released.stderr
    text = (package / "event-schemas.json").read_text()
    assert '"newName"' in text and '"title"' in text  # version 1 kept beside version 2
    again = schemas(tmp_path, "check", "--app", "shop:app")
    assert again.returncode == 0 and "not released yet" not in again.stdout


def test_no_released_file_or_no_app_is_a_usage_error(tmp_path: Path) -> None:
    package = copy_of_inventory(tmp_path)
    (package / "event-schemas.json").unlink()
    missing = schemas(tmp_path, "check", "--app", "shop:app")
    assert missing.returncode == 2
    assert (
        "no released schemas at" in missing.stderr and "eventgate schemas release" in missing.stderr
    )
    unknown = schemas(tmp_path, "check", "--app", "nowhere:app")
    assert unknown.returncode == 2 and "cannot import app module 'nowhere'" in unknown.stderr
    other = schemas(tmp_path, "check", "--app", "eventgate.examples.orders:app", "--file",
                      str(INVENTORY / "event-schemas.json"))  # fmt: skip
    assert other.returncode == 2 and "schemas of app inventory, not orders" in other.stderr


def test_release_writes_the_file_a_check_then_passes(tmp_path: Path) -> None:
    package = copy_of_inventory(tmp_path)
    (package / "event-schemas.json").unlink()
    released = schemas(tmp_path, "release", "--app", "shop:app")
    assert released.returncode == 0, released.stderr
    assert (package / "event-schemas.json").read_bytes() == (
        INVENTORY / "event-schemas.json"
    ).read_bytes()
    assert schemas(tmp_path, "check", "--app", "shop:app").returncode == 0


def test_asyncapi_prints_the_document_with_the_brokers_subjects(tmp_path: Path) -> None:
    printed = schemas(tmp_path, "asyncapi", "--app", "eventgate.examples.orders:app",
                      "--broker", "nats://user:pa55word@broker.example:4222")  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert document["asyncapi"] == "3.0.0" and "pa55word" not in printed.stdout
    assert document["servers"]["nats"]["host"] == "broker.example:4222"
    assert "nats.OrderPlaced" in document["channels"]
    config = tmp_path / "bad.toml"
    config.write_text("[gateway]\nmax_body_bytes = 'lots'\n")
    refused = schemas(tmp_path, "asyncapi", "--config", str(config))
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")
