"""The layout holds: no import cycle anywhere in airgrid, stages know nothing of Faust or of the
wiring, one module binds stages to Faust, and only the patches touch Faust's and aiokafka's
internals (issue 13). Read from the source, so a change that breaks a rule fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import airgrid

PACKAGE = Path(airgrid.__file__).parent
BINDING = "airgrid.worker.binding"
REGISTRATION = {"agent", "timer", "Table", "task", "page"}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return out


MODULES = modules()


def imports(tree: ast.Module) -> set[str]:
    """Every module a module imports (at any depth: lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def internal(name: str) -> str | None:
    """The airgrid module an import names (``a.b.c`` of ``from a.b.c import x``), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, tree in MODULES.items():
        targets = {internal(i) for i in imports(tree) if i.startswith("airgrid")}
        edges[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere_in_airgrid() -> None:
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stages_and_the_domain_import_neither_faust_nor_the_worker() -> None:
    forbidden = ("faust", "mode", "aiokafka", "airgrid.worker", "airgrid.patches", "airgrid.cli")
    offenders = {
        name: sorted(i for i in imports(tree) if i.split(".")[0] in forbidden or i.startswith(forbidden))
        for name, tree in MODULES.items()
        if name.startswith(("airgrid.stages", "airgrid.domain", "airgrid.models"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_binding_registers_agents_timers_tables_tasks_and_pages() -> None:
    calls = {
        name
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in REGISTRATION
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "app"
    }
    assert calls == {BINDING}


def test_only_the_patches_and_the_binding_import_faust() -> None:
    users = {
        name
        for name, tree in MODULES.items()
        if any(i.split(".")[0] in ("faust", "mode") for i in imports(tree))
    }
    assert {u for u in users if not u.startswith("airgrid.patches")} == {BINDING}


def test_one_command_line_framework_and_only_in_the_cli() -> None:
    """argparse is gone; click lives in airgrid/cli only."""
    for name, tree in MODULES.items():
        used = {i.split(".")[0] for i in imports(tree)}
        assert "argparse" not in used, name
        if not name.startswith("airgrid.cli"):
            assert "click" not in used, name


def test_the_graph_sees_imports() -> None:
    edges = graph()
    assert "airgrid.domain.epa" in edges["airgrid.domain.detection.hour"]
    assert "airgrid.stages.ports" in edges["airgrid.stages.owner"]
