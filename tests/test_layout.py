"""The package's shape: no import cycles, small modules, shallow inheritance, an isolated test cache.

Imports are read from the source (``ast``), every ``import`` anywhere in a module counts, including
those inside functions: a lazy import that closes a circle is still a circle, it only fails later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "edgekit"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imported(module: str, path: Path, node: ast.AST, mods: dict[str, Path]) -> list[str]:
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
    out = []
    for name in names:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = {dep for node in ast.walk(tree) for dep in _imported(name, path, node, mods)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_edgekit_modules():
    graph = import_graph()
    assert len(graph) > 40 and "edgekit.runtimes.base" in graph
    found = cycles(graph)
    detail = [" -> ".join(c) + f"  (edges: {[(a, b) for a in c for b in graph[a] if b in c]})" for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_no_module_over_500_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_inheritance_is_at_most_two_levels_below_a_library_base():
    """A class of ours may derive from a class of ours that derives from a library class, no deeper."""
    import importlib
    import inspect

    deep = []
    for name in _modules():
        if name.startswith("edgekit.cli") or name.endswith("__main__"):
            continue  # the CLI imports typer's whole app; its classes are few and checked by eye
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue  # an optional backend whose library is missing
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue
            ours = [c for c in cls.__mro__[1:] if c.__module__.startswith("edgekit")]
            if name == "edgekit.errors":
                continue  # the documented error tree is a taxonomy, not behaviour inheritance
            if len(ours) > 2:
                deep.append(f"{name}.{cls.__name__}: {[c.__name__ for c in ours]}")
    assert not deep, deep


def test_the_suite_uses_its_own_cache_folder():
    from edgekit.fileio import cache_dir

    assert cache_dir() != Path.home() / ".cache" / "edgekit"
    assert cache_dir().name.startswith("edgekit-test-cache-")
