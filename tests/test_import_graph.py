"""No import circles inside treadle.

Every import counts: module level, inside functions (lazy imports), and under
``if TYPE_CHECKING:`` (a circle there is still a circle in the design, and it is one
refactor away from a real one). Imports of third-party modules are ignored.

Edges: ``from .x import y`` is an edge to ``treadle.x`` — or to ``treadle.x.y`` when
``y`` is itself a submodule of the package ``treadle.x``; ``import treadle.x`` is an
edge to ``treadle.x`` (a package's ``__init__``). A package ``__init__`` re-exporting its
submodules has edges to them, so a submodule importing from its own package (``from .
import y`` inside ``treadle.pkg.sub``) closes a circle: import from the defining
submodule instead.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import treadle

ROOT = Path(treadle.__file__).resolve().parent


def _module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of a (possibly relative) ``from`` import's module."""
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


@functools.lru_cache(maxsize=4)
def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = _modules(root)
    top = root.name
    graph: dict[str, set[str]] = {m: set() for m in mods}

    def target(name: str) -> str | None:
        # the longest treadle module that the dotted name starts with
        while name:
            if name in mods:
                return name
            name = name.rpartition(".")[0]
        return None

    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # every node: function bodies and TYPE_CHECKING blocks too
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node.level, node.module)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for name in names:
                if name != top and not name.startswith(top + "."):
                    continue
                t = target(name)
                if t is not None and t != mod:
                    graph[mod].add(t)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _a_cycle(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """One concrete circle through the component's first module (for the failure message)."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if child not in prev:
                    prev[child] = node
                    nxt.append(child)
        frontier = nxt
    return comp


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    comps = strongly_connected(graph)
    msg = "\n".join(" -> ".join(_a_cycle(graph, c)) + f"   (component: {', '.join(c)})" for c in comps)
    assert not comps, f"import cycles in treadle:\n{msg}"


def test_the_check_finds_a_cycle(tmp_path: Path) -> None:
    """The detector itself: a planted circle (one lazy, one TYPE_CHECKING import) is found."""
    pkg = tmp_path / "treadle"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("def f():\n    from .sub.b import B\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import A\n")
    (pkg / "c.py").write_text("import treadle.sub\n")
    graph = import_graph(pkg)
    assert graph["treadle.a"] == {"treadle.sub.b"}
    assert graph["treadle.sub.b"] == {"treadle.a"}
    assert graph["treadle.c"] == {"treadle.sub"}
    assert strongly_connected(graph) == [["treadle.a", "treadle.sub.b"]]
    assert _a_cycle(graph, ["treadle.a", "treadle.sub.b"]) == ["treadle.a", "treadle.sub.b", "treadle.a"]


# the storage layer: what ``treadle.store`` may reach, directly or through what it imports. The run
# side of durability (the Journal sink, rebuilding a run) is core code above it (``_journal``, ``_resume``)
STORAGE_MAY_REACH = {"treadle.types", "treadle.events", "treadle.errors", "treadle._factories", "treadle._jsonable",
                     "treadle._plugs", "treadle._pg", "treadle._json"}


def reachable(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_store_is_storage() -> None:
    """``treadle.store`` knows tables, rows, records and leases; never the agent, the planner or the loop."""
    graph = import_graph()
    store = {m for m in graph if m == "treadle.store" or m.startswith("treadle.store.")}
    assert len(store) >= 8
    above = sorted(reachable(graph, store) - store - STORAGE_MAY_REACH)
    assert not above, f"treadle.store reaches modules above the storage layer: {above}"


def test_the_storage_check_finds_an_upward_import() -> None:
    graph = {"treadle.store.a": {"treadle.types"}, "treadle.types": {"treadle.planner"}, "treadle.planner": set()}
    assert reachable(graph, {"treadle.store.a"}) == {"treadle.store.a", "treadle.types", "treadle.planner"}
