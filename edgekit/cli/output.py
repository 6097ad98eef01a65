"""Tables and JSON for the CLI (stdout); progress and errors go to stderr."""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Iterable

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from edgekit.manifest import GateReport, Manifest
from edgekit.quality import METRICS

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class StderrLogHandler(logging.Handler):
    """edgekit's log records on stderr, one line each, warnings worded as the CLI's own
    (``warning: ...``): an unverified bare model file, a remote retrying, too many threads."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        try:
            text = escape(" ".join(record.getMessage().split()))
            err.print(f"[yellow]warning[/]: {text}" if record.levelno >= logging.WARNING else text)
        except Exception:  # a log line must never cost the answer
            self.handleError(record)


def log_to_stderr(level: int = logging.WARNING) -> None:
    """Show the ``edgekit`` loggers' records at ``level`` and above on stderr (once per process)."""
    logger = logging.getLogger("edgekit")
    if not any(isinstance(h, StderrLogHandler) for h in logger.handlers):
        logger.addHandler(StderrLogHandler())
    logger.setLevel(level)


# The flag that sets each library parameter an error message may name (EdgekitError.params, worded as
# ``name=value``, ``name=True`` or a leading ``name``). A parameter missing here stays in its Python wording.
FLAGS: dict[str, str] = {
    "accept_new_host_key": "--accept-new-host-key",  # devices over SSH
    "allow_pickle": "--allow-pickle",
    "api_key_files": "--api-key-file",  # edgekit.serve: the client keys
    "api_keys": "--api-key",
    "base_url": "--remote",  # RemoteLLM(base_url=)
    "calibration": "--calibration",
    "config": "--config",  # an edgekit.toml to read or update
    "context": "--context",
    "ep": "--ep",  # edgekit.package(ep=)
    "decision_log": "--decision-log",
    "device": "--device",
    "folder": "--report",  # profiler.report.write_report(folder=)
    "force": "--force",
    "formats": "--formats",  # edgekit.optimize(formats=)
    "gen_tokens": "--gen-tokens",
    "head_dim": "--head-dim",
    "host_threads": "--host-threads",  # edgekit.optimize
    "host": "--host",  # edgekit.serve.server.bind(host=)
    "kv_heads": "--kv-heads",
    "layers": "--layers",
    "max_kl": "--max-kl",  # edgekit.optimize
    "max_size_mb": "--max-size",
    "min_decode": "--min-decode",
    "min_top1": "--min-top1",
    "mmap": "--mmap",  # edgekit.package(mmap=)
    "llama_cpp_converter": "--llama-cpp-converter",
    "objective": "--objective",  # edgekit.optimize
    "model": "--model",  # RemoteLLM(model=): the remote's model name
    "optimize": "--optimize",  # optimize=False: --no-optimize
    "out": "-o/--output",
    "params": "--params",
    "port": "--port",  # edgekit.serve.server.bind(port=)
    "platform": "--platform",  # edgekit.package(platform=)
    "prompt_tokens": "--prompt-tokens",
    "python": "--python",  # devices setup --python PATH
    "quant": "--quant",
    "quants": "--quants",  # edgekit.optimize(quants=)
    "save": "--save",  # targets detect --save FILE.toml
    "source": "--source",  # gate_artifact(source=): the original model
    "target": "--target",
    "task": "--task",
    "threads": "--threads",
    "threshold": "--threshold",
}


def error_line(exc: BaseException) -> str:
    """The one line the CLI prints for an edgekit error: its message's first line, with the
    parameters it names worded as flags (``quant=bf16`` -> ``--quant bf16``, ``force=True`` ->
    ``--force``, ``optimize=False`` -> ``--no-optimize``, a leading ``context`` -> ``--context``)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for name in getattr(exc, "params", ()):
        flag = FLAGS.get(name)
        if flag is None:
            continue
        negated = "--no-" + flag.rsplit("/", 1)[-1].removeprefix("--")
        word = rf"(?<![\w.-]){re.escape(name)}="
        for pattern, flag_text in (
            (word + r"True\b", flag),  # force=True -> --force
            (word + r"False\b", negated),  # optimize=False -> --no-optimize
            (word + r"(?=[\s,;:)]|$)", flag),  # "choose another out=" -> "choose another -o/--output"
            (word, flag + " "),  # quant=bf16 -> --quant bf16
            (rf"^{re.escape(name)}\b(?!=)", flag),  # "context must be ..." -> "--context must be ..."
        ):
            text = re.sub(pattern, lambda _, f=flag_text: f, text)
    return text


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ---- tables: every CLI table is built here or printed by print_table ----------------------------

def rows_table(rows: list[dict[str, str]], title: str, *, left: Iterable[str] | Callable[[str], bool] = (),
               no_wrap: Iterable[str] = ()) -> Table:
    """A table of ``rows`` (one dict each; the columns in the order they first appear, '-' where a row has
    none). Columns named in ``left`` (or for which it returns true) are left-justified, the rest (numbers)
    right-justified; a cell too wide for a terminal folds onto more lines (never cut to '…'); columns in
    ``no_wrap`` (labels) stay on one line. Cells are plain text: a label or an error holding [brackets] is
    not Rich markup."""
    is_left = left if callable(left) else set(left).__contains__
    keep = set(no_wrap)
    table = Table(title=title, title_justify="left")
    cols = list(dict.fromkeys(k for row in rows for k in row))
    for c in cols:
        table.add_column(c, justify="left" if is_left(c) else "right", no_wrap=c in keep, overflow="fold")
    for row in rows:
        table.add_row(*(Text(row.get(c, "-")) for c in cols))
    return table


def fields_table(title: str, rows: Iterable[tuple[str, Any]], *, markup: bool = False) -> Table:
    """A two-column table without a header: a bold field name and its value (plain text unless ``markup``)."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in rows:
        table.add_row(k, v if markup else Text(str(v)))
    return table


# On a pipe a table is measured up to this width (its cells fold beyond it): no real table comes near it.
PIPE_WIDTH_LIMIT = 1000


def print_table(*tables: Table, console: Console | None = None) -> None:
    """Print ``tables`` on ``console`` (stdout's by default).

    On a terminal Rich fits a table to the window. On a pipe or a file (``edgekit bench ... | tee log``)
    Rich would assume 80 columns (or $COLUMNS) and cut every cell to '…'; there each table is printed at
    its natural width instead, so every value is there in full.
    """
    console = console or out
    for table in tables:
        if console.is_terminal:
            console.print(table)
            continue
        wide = console.options.update_width(PIPE_WIDTH_LIMIT)
        width = max(Measurement.get(console, wide, table).maximum, 1)
        Console(file=console.file, width=width, highlight=False, no_color=console.no_color).print(table)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def gate_table(reports: list[tuple[str, GateReport]], title: str = "quality gate") -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("stage", "metric", "value", "bound", "result"):
        table.add_column(col, justify="right" if col in ("value", "bound") else "left")
    for label, rep in reports:
        if rep.status == "skipped":
            table.add_row(label, "-", "-", "-", "[yellow]skipped[/]")
            continue
        for name, value in rep.metrics.items():
            bound = rep.thresholds.get(name)
            op = "<=" if METRICS.get(name) == "max" else ">="
            ok = not any(f.startswith(f"{name} ") for f in rep.failures)
            table.add_row(
                label, name, f"{value:.6g}", f"{op} {bound:g}" if bound is not None else "-",
                "[green]pass[/]" if ok else "[red bold]FAIL[/]",
            )
    return table


def manifest_tables(m: Manifest, path: str) -> list[Table]:
    src = m.source.hub_id or m.source.path
    rows = [
        ("format", m.format), ("task", m.task), ("precision", m.precision),
        ("quantization", f"{m.quantization.method} {json.dumps(m.quantization.params) if m.quantization.params else ''}"),
        ("graph rewrites", "; ".join(m.graph_rewrites) or "-"),
        ("model file", m.model_file), ("architecture", m.model.architecture),
        ("parameters", f"{m.model.n_params:,}" if m.model.n_params else "-"),
        ("context", str(m.model.context_length or "-")),
        ("source", f"{m.source.kind}: {src}" + (f" @ {m.source.revision}" if m.source.revision else "")),
        ("source weights sha256", m.source.weights_sha256[:16] + "…" if m.source.weights_sha256 else "-"),
        ("gate", f"{m.gate.status} ({m.gate.n_prompts} prompts, prompts sha256 {str(m.gate.prompts_sha256)[:12]}…)"
         if m.gate.status != "skipped" else "skipped (--no-gate)"),
        ("created", m.created_at), ("schema", str(m.schema_version)),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items())),
    ]
    summary = fields_table(f"artifact {path}", rows)
    files = Table(title="files", title_justify="left")
    files.add_column("path")
    files.add_column("size", justify="right")
    files.add_column("sha256")
    for f in m.files:
        files.add_row(f.path, human_size(f.size), f.sha256[:16] + "…")
    gates = [(g.precision or "stage", g) for g in m.stage_gates] + [(m.precision, m.gate)]
    return [summary, gate_table(gates), files]
