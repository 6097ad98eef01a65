"""The package's shape: no import cycles, imports that point one way, small modules, shallow inheritance, an
isolated test cache.

Imports are read from the source (``ast``), every ``import`` anywhere in a module counts, including
those inside functions: a lazy import that closes a circle is still a circle, it only fails later.

Which way imports may point (``LAYERS`` below; README.md's "Layers" shows the same table, and a test
checks that both match it):

| layer (lowest first) | modules in edgekit/ (a package: name/) | may import, besides itself |
|---|---|---|
| core | errors, names, quants, strict, fileio, protobuf, gguf_header, families, safetensors_io, pooling, hostmem, tomlio, progress, deps, version, translate | nothing else |
| artifacts | manifest, sources, packaged, artifact, quality | core |
| targets | targets/ | core |
| runtimes | runtimes/ | core, artifacts |
| exporters | exporters/ | core, artifacts |
| router | router/ | core, artifacts, runtimes |
| profiler | profiler/ | core, artifacts, targets, runtimes |
| package | package/ | core, artifacts, targets, runtimes, profiler |
| devices | devices/ | core, artifacts, targets, runtimes, profiler |
| serve | serve/ | core, artifacts, runtimes, router |
| optimize | optimize/ | core, artifacts, targets, runtimes, exporters, profiler, devices, package |
| api | `__init__.py` | every row above |
| cli | cli/, `__main__.py` | every row above |

One seam, where the gate runs the artifact it wrote:
exporters may import `edgekit.runtimes`, `edgekit.runtimes.onnx`, `edgekit.runtimes.llamacpp`, `edgekit.runtimes.tokenizer`
"""

from __future__ import annotations

import ast
import re
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


# ------------------------------------------------------------------ host-independent assertions

TESTS = Path(__file__).resolve().parent
# A metric named in a test, in source (``metrics["top1"]``, ``.metric("top1")``) or in printed text ("top-1 0.944").
_METRIC_WORDS = ("kl_mean", "kl_max", "top1", "top-1", "cos_mean", "cos_min", "label_agreement", "prob_diff_max",
                 "gate", "metric")
_PRINTED_METRIC = re.compile(r"(kl_mean|kl_max|top-?1|cos_mean|cos_min|label_agreement|prob_diff_max)"
                             r"[^0-9\n]{0,6}(\d\.\d{3,})")
SYNTHETIC = "# synthetic"  # on the line: the value is an input the test built, not a measurement


def _decimals(source: str) -> int:
    m = re.fullmatch(r"-?\d*\.(\d+)", source.strip())
    return len(m.group(1)) if m else 0


def _near_exact(value: float) -> bool:
    """A bound within 1e-3 of 0 or 1 asks for near-identical outputs (an fp32 export): not a tuned value."""
    return min(abs(value), abs(1 - value)) <= 1e-3 + 1e-12


def metric_literal_findings(path: Path, source: str | None = None) -> list[str]:
    """Where a test holds a measured gate metric to a value with three or more decimals.

    Gate metrics move in the third decimal between CPUs of one kind (torch, onnxruntime and llama.cpp pick
    kernels by instruction set), so such a literal passes on the host it was copied from and fails on the
    next. Flagged: a float literal with >= 3 decimals on either side of a comparison (``==``, ``<``, ``in``,
    ``pytest.approx``) whose other side names a metric, unless it is a near-exactness bound (within 1e-3 of
    0 or 1); and a string literal that prints a metric with >= 3 decimals ("top-1 0.944"). A line marked
    ``# synthetic`` compares a value the test itself built.
    """
    source = path.read_text() if source is None else source
    lines = source.splitlines()
    tree = ast.parse(source, str(path))
    found = []

    def flag(node: ast.AST, why: str) -> None:
        line = lines[node.lineno - 1]
        if SYNTHETIC not in line:
            found.append(f"{path.name}:{node.lineno}: {why}: {line.strip()}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            for text in ast.walk(node):
                if isinstance(text, ast.Constant) and isinstance(text.value, str) and any(
                        not _near_exact(float(m.group(2))) for m in _PRINTED_METRIC.finditer(text.value)):
                    flag(text, "a printed metric with three or more decimals")
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        texts = [ast.get_source_segment(source, s) or "" for s in sides]
        for i, side in enumerate(sides):
            for const in ast.walk(side):
                if not (isinstance(const, ast.Constant) and isinstance(const.value, float)):
                    continue
                if _decimals(ast.get_source_segment(source, const) or "") < 3 or _near_exact(const.value):
                    continue
                others = " ".join(t for j, t in enumerate(texts) if j != i)
                if any(w in others for w in _METRIC_WORDS):
                    flag(node, f"{const.value} compared with a gate metric")
    return found


def test_the_metric_literal_guard_finds_what_it_should():
    cases = {
        'assert m.gate.metrics["top1"] == 0.944\n': 1,
        'assert q.metric("top1") == pytest.approx(0.853, abs=1e-3)\n': 1,
        'assert line.startswith("gguf-q8_0 (top-1 0.944")\n': 1,
        'assert m.gate.metrics["kl_mean"] < 0.084\n': 1,
        'assert m.gate.metrics["cos_min"] > 0.9999 and m.gate.metrics["kl_mean"] < 1e-4\n': 0,  # near-exact, sci
        'assert m.gate.metrics["top1"] >= 0.85\n': 0,  # two decimals: a bound with a margin
        'assert misses == ["top-1 0.853 < 0.9"]  # synthetic: the candidate was built with 0.853\n': 0,
        'assert elapsed < 0.125\n': 0,  # not a metric
        'assert "--min-top1 0.999" in line\n': 0,  # near-exact
        'run("--threshold", "top1=0.944")\n': 0,  # an input, not an assertion
    }
    for text, n in cases.items():
        assert len(metric_literal_findings(Path("case.py"), text)) == n, text


def test_no_test_holds_a_measured_metric_to_three_decimals():
    here = Path(__file__).resolve()  # its literals are the guard's own cases
    found = [f for p in sorted(TESTS.rglob("*.py")) if "data" not in p.relative_to(TESTS).parts and p != here
             for f in metric_literal_findings(p)]
    assert not found, ("gate metrics move in the third decimal between hosts; assert a bound with a margin, a "
                       "relation, or agreement between two reports of one run:\n" + "\n".join(found))


# ------------------------------------------------------------------ layers: imports point one way

# (layer, the names directly under edgekit/ it holds, the lower layers it may import). A layer may always import
# itself; lowest first, and a layer may import only layers listed before it, so no import points up and no two
# layers import each other. "__init__" is the package itself (edgekit/__init__.py, the lazy public API).
LAYERS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("core", ("errors", "names", "quants", "strict", "fileio", "protobuf", "gguf_header", "families",
              "safetensors_io", "pooling", "hostmem", "tomlio", "progress", "deps", "version", "translate"), ()),
    ("artifacts", ("manifest", "sources", "packaged", "artifact", "quality"), ("core",)),
    ("targets", ("targets",), ("core",)),
    ("runtimes", ("runtimes",), ("core", "artifacts")),
    ("exporters", ("exporters",), ("core", "artifacts")),
    ("router", ("router",), ("core", "artifacts", "runtimes")),
    ("profiler", ("profiler",), ("core", "artifacts", "targets", "runtimes")),
    ("package", ("package",), ("core", "artifacts", "targets", "runtimes", "profiler")),
    ("devices", ("devices",), ("core", "artifacts", "targets", "runtimes", "profiler")),
    ("serve", ("serve",), ("core", "artifacts", "runtimes", "router")),
    ("optimize", ("optimize",), ("core", "artifacts", "targets", "runtimes", "exporters", "profiler", "devices",
                                 "package")),
    ("api", ("__init__",), ("core", "artifacts", "targets", "runtimes", "exporters", "router", "profiler",
                            "package", "devices", "serve", "optimize")),
    ("cli", ("cli", "__main__"), ("core", "artifacts", "targets", "runtimes", "exporters", "router", "profiler",
                                  "package", "devices", "serve", "optimize", "api")),
]
# The one crossing outside the table: the gate runs the artifact it just wrote through these runtime modules
# (documented in edgekit/exporters/__init__.py). Nothing else in the runtimes, and never the other way.
SEAMS = {("exporters", "runtimes"): ("edgekit.runtimes", "edgekit.runtimes.onnx", "edgekit.runtimes.llamacpp",
                                     "edgekit.runtimes.tokenizer")}
README = PKG.parent / "README.md"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return next((name for name, tops, _ in LAYERS if top in tops), None)


def bad_edges(graph: dict[str, set[str]]) -> list[str]:
    """Every import the table does not allow, as 'importer [layer] -> imported [layer]'."""
    allowed = {name: {name, *below} for name, _, below in LAYERS}
    bad = []
    for module in sorted(graph):
        src = layer_of(module)
        if src is None:
            bad.append(f"{module}: in no layer (add its name to LAYERS in tests/test_layout.py)")
            continue
        for dep in sorted(graph[module]):
            dst = layer_of(dep)
            if dst in allowed[src] or dep in SEAMS.get((src, dst), ()):
                continue
            bad.append(f"{module} [{src}] -> {dep} [{dst}]")
    return bad


def layer_table() -> str:
    """LAYERS as the Markdown table this module's docstring and README.md ("Layers") show."""
    def names(tops: tuple[str, ...]) -> str:
        return ", ".join(f"{t}/" if (PKG / t).is_dir() else f"`{t}.py`" if t.startswith("__") else t for t in tops)

    rows, seen = [], []
    for name, tops, below in LAYERS:
        may = ("nothing else" if not below else "every row above" if len(below) > 2 and list(below) == seen
               else ", ".join(below))
        rows.append(f"| {name} | {names(tops)} | {may} |")
        seen.append(name)
    seams = [f"{a} may import {', '.join(f'`{m}`' for m in mods)}" for (a, _), mods in SEAMS.items()]
    return "\n".join(["| layer (lowest first) | modules in edgekit/ (a package: name/) | may import, besides itself |",
                      "|---|---|---|", *rows, "", "One seam, where the gate runs the artifact it wrote:", *seams])


def test_the_layer_checker_finds_a_bad_edge():
    graph = {"edgekit.quality": {"edgekit.runtimes.onnx", "edgekit.manifest"}, "edgekit.manifest": set(),
             "edgekit.exporters.onnx": {"edgekit.runtimes.onnx", "edgekit.runtimes.base"},
             "edgekit.runtimes.onnx": set(), "edgekit.runtimes.base": set(), "edgekit.distill.x": set()}
    assert bad_edges(graph) == [
        "edgekit.distill.x: in no layer (add its name to LAYERS in tests/test_layout.py)",
        "edgekit.exporters.onnx [exporters] -> edgekit.runtimes.base [runtimes]",
        "edgekit.quality [artifacts] -> edgekit.runtimes.onnx [runtimes]",
    ]


def test_the_layer_table_points_one_way():
    order = [name for name, _, _ in LAYERS]
    assert len(set(order)) == len(order)
    up = [(name, b) for i, (name, _, below) in enumerate(LAYERS) for b in below if b not in order[:i]]
    assert not up, f"a layer may import only layers listed before it in LAYERS: {up}"
    tops = [t for _, ts, _ in LAYERS for t in ts]
    assert len(set(tops)) == len(tops), "a name in two layers"
    assert all((a, b) not in SEAMS for a, _, below in LAYERS for b in below), "a seam the table already allows"


def test_every_import_points_down_the_layer_table():
    bad = bad_edges(import_graph())
    assert not bad, ("imports the layer table does not allow (move the function to the lower layer, or invert the "
                     "dependency; the table is LAYERS in tests/test_layout.py):\n  " + "\n  ".join(bad))


def test_the_layer_table_in_the_docs_is_the_one_checked():
    table = layer_table()
    assert table in (__doc__ or ""), "tests/test_layout.py's docstring shows another table: paste\n" + table
    assert table in README.read_text(), "README.md's Layers section shows another table: paste\n" + table
