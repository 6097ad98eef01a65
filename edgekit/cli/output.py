"""Tables and JSON for the CLI (stdout); progress and errors go to stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from edgekit.manifest import GateReport, Manifest
from edgekit.quality import METRICS

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


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
    summary = Table(title=f"artifact {path}", title_justify="left", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value")
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
    for k, v in rows:
        summary.add_row(k, v)
    files = Table(title="files", title_justify="left")
    files.add_column("path")
    files.add_column("size", justify="right")
    files.add_column("sha256")
    for f in m.files:
        files.add_row(f.path, human_size(f.size), f.sha256[:16] + "…")
    gates = [(g.precision or "stage", g) for g in m.stage_gates] + [(m.precision, m.gate)]
    return [summary, gate_table(gates), files]
