"""The package layout keeps its promises: no import circles, and imports point one way.

Read with Python's own `ast`, so the check needs nothing installed and covers every import, the
lazy ones inside functions and those under `TYPE_CHECKING` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("emvnet", "service", "worker")
# Inside emvnet, a layer may import its own and the ones to its right, never one to its left.
LAYERS = (("training", "evaluation"), ("net",), ("merge",), ("io",))


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name imported from a package counts as that
    package, or as the submodule when it is one)."""

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(d for a in node.names if (d := known(a.name)))
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                source = ".".join([*base, *([node.module] if node.module else [])])
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    dep = full if full in mods else known(source)
                    if dep:
                        deps.add(dep)
        deps.discard(name)
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


GRAPH = import_graph(modules())


def test_the_graph_sees_the_packages() -> None:
    """A check that reads nothing passes trivially: the graph must hold the known modules and edges."""
    assert "emvnet.merge.fusion" in GRAPH and "service.grpc_server" in GRAPH
    assert "emvnet.merge.align" in GRAPH["emvnet.net.engine"]
    assert "service.grpc_stream" in GRAPH["service.grpc_server"]


def test_circles_are_found_when_present() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert circles(GRAPH) == []


@pytest.mark.parametrize(("upper", "lower"), [("service", "worker"), ("worker", "emvnet")])
def test_packages_import_one_way(upper: str, lower: str) -> None:
    back = sorted(
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        if m.startswith(lower)
        for d in deps
        if d.split(".")[0] == upper
    )
    assert back == []


def test_emvnet_layers_import_downward() -> None:
    def layer(module: str) -> int | None:
        parts = module.split(".")
        if parts[0] != "emvnet" or len(parts) < 2:
            return None
        return next((i for i, names in enumerate(LAYERS) if parts[1] in names), None)

    upward = []
    for module, deps in GRAPH.items():
        mine = layer(module)
        if mine is None:
            continue
        upward += [f"{module} -> {d}" for d in deps if (theirs := layer(d)) is not None and theirs < mine]
    assert upward == []
