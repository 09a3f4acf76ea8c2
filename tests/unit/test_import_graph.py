"""eventgate's modules import one another without a cycle, `if TYPE_CHECKING:` imports included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import eventgate

PACKAGE_DIR = Path(eventgate.__file__).resolve().parent


def module_name(path: Path) -> str:
    """`eventgate.functions.api` for functions/api.py, `eventgate.functions` for its __init__."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement anywhere in `tree` names, relative ones resolved;
    `from package import name` names both `package` and `package.name`."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Each eventgate module and the eventgate modules it imports."""
    paths = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(), str(path))
        names = imported_names(tree, module, path.name == "__init__.py")
        graph[module] = {name for name in names if name in paths and name != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (`a, b, ..., a`) through each group of mutually importing modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(cycle_within(graph, set(group)))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def cycle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, staying inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for imported in sorted(graph[module] & group):
                if imported == start:
                    return [*paths[module], start]
                if imported not in paths:
                    paths[imported] = [*paths[module], imported]
                    following.append(imported)
        frontier = following
    raise AssertionError(f"{sorted(group)} is not strongly connected")


def test_the_graph_sees_type_checking_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import api\n"
        "from .store import FunctionStore\n"
        "if TYPE_CHECKING:\n"
        "    from eventgate.functions.context import Context\n"
    )
    names = set(imported_names(ast.parse(source), "eventgate.functions.runner", False))
    assert {
        "eventgate.functions.api",
        "eventgate.functions.store",
        "eventgate.functions.context",
    } <= names


def test_cycles_finds_a_cycle_and_only_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)
