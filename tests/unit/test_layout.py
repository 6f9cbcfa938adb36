"""The package layout keeps its promises: the pure domain imports no command and has no import
cycle (the `aqi` command once lived in domain/aqi.py and made aqi <-> epa a cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import airgrid

PACKAGE = Path(airgrid.__file__).resolve().parent


def imports_of(package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports anywhere (late imports too)."""
    root = PACKAGE.parent
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found |= {n for n in names if n.startswith(package)}
        graph[module] = found
    return {m: {n for n in found if n in graph and n != m} for m, found in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_no_import_cycle_in_the_domain() -> None:
    graph = imports_of("airgrid.domain")
    assert "airgrid.domain.epa" in graph["airgrid.domain.detection.hour"]  # the graph sees imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_no_command_line_outside_the_cli() -> None:
    """One framework: argparse is gone, and click lives in airgrid/cli only."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import argparse" not in text, path
        if "cli" not in path.relative_to(PACKAGE).parts:
            assert "import click" not in text, path
