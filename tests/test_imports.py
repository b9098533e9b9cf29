"""The package's import graph: no circles, no private name (`_x`) taken from another module,
and no lower layer (`io`, `world`) importing a higher one.

Every `import` / `from ... import` in src/r4d counts, at module level or inside a function (a
lazy import hides a circle from Python, not from the reader). `from r4d.x import y` is an
edge to the submodule r4d.x.y when y is one, else to r4d.x; importing r4d.x.y also runs the
`__init__` of every package above it that the importer is not itself inside.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "r4d"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # "src/r4d/x.py:12"


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under `src`."""
    out = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(name: str, files: dict[str, Path]) -> bool:
    return name in files and files[name].name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str, files: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module, files):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_packages(target: str, source: str) -> list[str]:
    """`target` and the packages above it whose `__init__` importing it runs, leaving out
    those the importing module is itself inside (already initialised)."""
    parts = target.split(".")
    chain = [".".join(parts[: k + 1]) for k in range(1, len(parts))]
    inside = {".".join(source.split(".")[: k + 1]) for k in range(len(source.split(".")))}
    return [name for name in chain if name not in inside or name == target]


def scan(files: dict[str, Path], src: Path = SRC) -> tuple[list[Edge], list[str]]:
    """Every edge between r4d modules, and every private name imported from another module."""
    edges, private = [], []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(src.parent)}:{getattr(node, 'lineno', 0)}"
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
            elif isinstance(node, ast.ImportFrom):
                origin = _absolute(node, module, files)
                if origin.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    submodule = f"{origin}.{alias.name}"
                    if submodule in files:
                        targets.append(submodule)
                        continue
                    targets.append(origin)
                    if alias.name.startswith("_") and origin != module:
                        private.append(f"{where}: {module} imports {alias.name} from {origin}")
            for target in targets:
                if target not in files:
                    continue  # a missing module is the import's own error, not the graph's
                for name in _with_packages(target, module):
                    if name != module:
                        edges.append(Edge(module, name, where))
    return edges, private


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(start: str, members: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path start -> ... -> start inside one component."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is on no cycle")


def describe_cycles(edges: list[Edge]) -> list[str]:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        where.setdefault((e.source, e.target), e.where)
    lines = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(component[0], set(component), graph)
        steps = [f"  {a} -> {b}  ({where[a, b]})" for a, b in itertools.pairwise(cycle)]
        lines.append(f"cycle among {', '.join(component)}:\n" + "\n".join(steps))
    return lines


def test_the_scanner_finds_a_lazy_cycle_through_a_package_and_a_private_import(tmp_path):
    src = tmp_path / "src"
    modules = {
        "__init__.py": "",
        "low/__init__.py": "from r4d.low.table import ROWS\n",
        "low/table.py": "ROWS = 1\n\ndef draw():\n    from r4d.high import plot\n",
        "high.py": "from . import low\nfrom r4d.low.table import _helper\nplot = 1\n",
        "alone.py": "import r4d.low.table\nfrom r4d import high\n",
    }
    for name, text in modules.items():
        (src / PACKAGE / name).parent.mkdir(parents=True, exist_ok=True)
        (src / PACKAGE / name).write_text(text)
    files = module_files(src)
    edges, private = scan(files, src)
    pairs = {(e.source, e.target) for e in edges}
    assert ("r4d.alone", "r4d.high") in pairs  # `from r4d import high`: the submodule
    assert {("r4d.alone", "r4d.low"), ("r4d.alone", "r4d.low.table")} <= pairs
    assert ("r4d.low.table", "r4d.low") not in pairs  # its own package is already running
    assert private == ["src/r4d/high.py:2: r4d.high imports _helper from r4d.low.table"]
    (cycle,) = describe_cycles(edges)
    assert cycle.startswith("cycle among r4d.high, r4d.low, r4d.low.table:")
    assert "r4d.low.table -> r4d.high  (src/r4d/low/table.py:4)" in cycle  # a lazy import


def test_components_and_shortest_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert shortest_cycle("a", {"a", "b", "c"}, graph) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    edges, _ = scan(module_files())
    cycles = describe_cycles(edges)
    if cycles:
        pytest.fail("import cycles in src/r4d:\n" + "\n".join(cycles), pytrace=False)


def test_no_private_name_is_imported_from_another_module():
    _, private = scan(module_files())
    if private:
        lines = "\n".join(f"  {p}" for p in private)
        pytest.fail(f"private names imported across modules:\n{lines}", pytrace=False)


# A lower layer imports only itself and the layers listed for it.
LAYERS = {
    "r4d.io": ("r4d.io", "r4d.errors"),
    "r4d.world": ("r4d.world", "r4d.io", "r4d.errors"),
}


def test_lower_layers_do_not_import_higher_ones():
    edges, _ = scan(module_files())
    wrong = sorted(
        {
            f"  {e.where}: {e.source} imports {e.target}"
            for e in edges
            for layer, allowed in LAYERS.items()
            if (e.source == layer or e.source.startswith(layer + "."))
            and not any(e.target == a or e.target.startswith(a + ".") for a in allowed)
        }
    )
    if wrong:
        pytest.fail("a lower layer imports a higher one:\n" + "\n".join(wrong), pytrace=False)
