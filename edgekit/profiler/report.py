"""Render a :class:`BenchReport`: JSON file, Markdown table, PNG chart.

``write_report(report, DIR)`` writes ``bench.json``, ``bench.md`` and
``bench.png`` into DIR through temporary files and renames, so a crash never
leaves a half-written report. The chart has one panel per place: the host
(measured) and each target (predicted), with one point per artifact at (size,
decode tokens/s) coloured by the quality gate's metric from the artifact's
manifest (top-1 agreement for decoders, cosine for encoders). Encoders are
plotted by batch-32 items/s.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.manifest import probe_writable, write_json_atomic, write_text_atomic
from edgekit.profiler.schema import ArtifactResult, BenchReport


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.0f} MB"


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:,.1f}"


def _gate(r: ArtifactResult) -> str:
    if r.gate is None:
        return "-"
    if r.gate.value is None:
        return r.gate.status
    return f"{r.gate.metric} {r.gate.value:.3f} ({r.gate.status})"


def _wait(r: ArtifactResult) -> str:
    """Median share of thread time the runs spent waiting for a CPU: above ~10% the host was busy."""
    waits = [run.cpu_wait_fraction for run in r.runs if run.ok and not run.warmup and run.cpu_wait_fraction is not None]
    if not waits:
        return "-"
    waits.sort()
    return f"{waits[len(waits) // 2]:.0%}"


def measured_rows(report: BenchReport) -> list[dict[str, str]]:
    """One row per artifact: the host measurement."""
    rows = []
    for r in report.results:
        row = {"artifact": r.label, "format": r.format, "precision": r.precision, "size": mb(r.size_bytes),
               "status": r.status, "gate": _gate(r), "peak RSS": mb(r.peak_rss_bytes.median if r.peak_rss_bytes else None),
               "CPU wait": _wait(r)}
        if r.decoder is not None:
            d = r.decoder
            row.update({"load s": _f(d.load_s.median, 2), "TTFT ms": _ms(d.ttft_s.median),
                        "prefill tok/s": _f(d.prefill_tps.median), "decode tok/s": _f(d.decode_tps.median),
                        "decode range": f"{d.decode_tps.min:.1f}-{d.decode_tps.max:.1f}",
                        "token ms p50/p90/p99": "/".join(_ms(x) for x in (d.token_latency_s.p50, d.token_latency_s.p90,
                                                                           d.token_latency_s.p99))})
        elif r.encoder is not None:
            b = r.encoder.batches
            row.update({"load s": _f(r.encoder.load_s.median, 2),
                        "batch ms p50 (1/8/32)": "/".join(_ms(b[k].latency_s.p50) for k in ("1", "8", "32") if k in b),
                        "items/s (1/8/32)": "/".join(_f(b[k].items_per_s) for k in ("1", "8", "32") if k in b)})
        rows.append(row)
    return rows


def prediction_rows(report: BenchReport) -> list[dict[str, str]]:
    rows = []
    for r in report.results:
        measured = r.decoder.decode_tps.median if r.decoder else None
        for p in r.predictions:
            check = next((c for c in r.ram_checks if c.target == p.target), None)
            rows.append({
                "artifact": r.label, "target": p.target, "threads": str(p.threads), "bound": p.bound,
                "decode tok/s | items/s (pred)": _f(p.decode_tps) if p.decode_tps else _f(p.encoder_items_per_s),
                "decode tok/s (host)": _f(measured),
                "prefill tok/s (pred)": _f(p.prefill_tps),
                "memory (pred)": mb(p.memory_bytes), "budget": mb(p.ram_budget_bytes),
                "fits": "yes" if p.fits else "NO",
                "host RSS > budget": "-" if check is None else ("YES" if check.exceeds_budget else "no"),
            })
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(row.get(c, "") for c in cols) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: BenchReport) -> str:
    s = report.settings
    host = report.host
    parts = [
        "# edgekit bench",
        "",
        f"{report.created_at}, edgekit {report.edgekit_version}; {s.runs} runs (+{s.warmup} warm-up) per artifact, "
        f"{s.prompt_tokens} prompt tokens, {s.gen_tokens} generated, {s.threads} threads.",
    ]
    if host is not None:
        parts.append(
            f"Host: {host.soc or host.arch}, {host.total_cores} cores, bandwidth {host.memory_bandwidth_gbs.value:.1f} GB/s "
            f"(copy, all threads), {host.peak_gflops_fp32.value:.0f} GFLOP/s fp32, {host.peak_gops_int8.value:.0f} GOP/s int8."
        )
    parts += ["", "## Measured on the host", "", markdown_table(measured_rows(report)), "",
              "CPU wait: share of the runs' thread time spent waiting for a CPU (other processes); above about 10% "
              "the timings, and the calibration behind the predictions, are pessimistic."]
    preds = prediction_rows(report)
    if preds:
        parts += ["", "## Predicted per target", "", markdown_table(preds)]
    busy = [r.label for r in report.results if r.calibration and (r.calibration.cpu_wait_fraction or 0) > 0.10]
    if busy:
        parts += ["", f"Warning: the calibration runs of {', '.join(busy)} waited more than 10% of their time for a "
                      "CPU; their predictions are pessimistic. Bench again on a quieter machine."]
    failed = [r for r in report.results if r.error]
    if failed:
        parts += ["", "## Failed runs", ""] + [f"- {r.label}: {r.error}" for r in failed]
    return "\n".join(parts) + "\n"


ROWS = (("decoder", "decode tok/s", "gate top-1 agreement"), ("encoder", "items/s at batch 32", "gate cosine"))


def _points(report: BenchReport) -> dict[str, dict[str, list]]:
    """{row kind: {panel title: [(label, size MB, speed, quality or None)]}}: host measured, then each target."""
    rows: dict[str, dict[str, list]] = {}
    for r in report.results:
        q = r.gate.value if r.gate is not None else None
        row = "decoder" if r.kind == "decoder" else "encoder"
        panels = rows.setdefault(row, {"host (measured)": []})
        if r.decoder is not None:
            panels["host (measured)"].append((r.label, r.size_bytes / 1e6, r.decoder.decode_tps.median, q))
        elif r.encoder is not None and "32" in r.encoder.batches:
            panels["host (measured)"].append((r.label, r.size_bytes / 1e6, r.encoder.batches["32"].items_per_s, q))
        for p in r.predictions:
            speed = p.decode_tps if p.decode_tps is not None else p.encoder_items_per_s
            if speed is not None:
                panels.setdefault(f"{p.target} (predicted)", []).append((r.label, r.size_bytes / 1e6, speed, q))
    return {k: {t: pts for t, pts in v.items() if pts} for k, v in rows.items() if any(v.values())}


def _label_offsets(pts, x_max: float, y_max: float, panel_pts: float = 210.0) -> list[float]:
    """Vertical offsets (points) for the labels so that labels of nearby points do not overprint."""
    placed: list[tuple[float, float, float, float]] = []  # label boxes in axes fractions
    out = [5.0] * len(pts)
    for i in sorted(range(len(pts)), key=lambda i: -pts[i][2]):
        label, size, speed = pts[i][0], pts[i][1], pts[i][2]
        x0, y0 = size / x_max + 0.01, speed / y_max
        x1 = x0 + 0.012 * len(label)
        for dy in (5, -12, 16, -23, 27, -34, 38):
            b0 = y0 + dy / panel_pts
            box = (x0, b0, x1, b0 + 8 / panel_pts)
            if not any(box[0] < p[2] and p[0] < box[2] and box[1] < p[3] and p[1] < box[3] for p in placed):
                break
        placed.append(box)
        out[i] = float(dy)
    return out


def chart(report: BenchReport, path: Path) -> None:
    """Size vs speed, one panel per place (host measured, each target predicted), colour = gate quality.

    Decoders (decode tokens/s) and encoders (items/s at batch 32) get a row each.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib (for the chart)", "report") from exc
    rows = _points(report)
    kinds = [k for k, _u, _q in ROWS if k in rows] or ["decoder"]
    n_cols = max([len(rows.get(k, {})) for k in kinds] + [1])
    fig, axes = plt.subplots(len(kinds), n_cols, figsize=(4.4 * n_cols + 1.2, 3.9 * len(kinds)), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    for i, kind in enumerate(kinds):
        unit, qlabel = next((u, q) for k, u, q in ROWS if k == kind)
        panels = rows.get(kind, {})
        qualities = [pt[3] for pts in panels.values() for pt in pts if pt[3] is not None]
        lo, hi = (min(qualities), max(qualities)) if qualities else (0.0, 1.0)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.01, hi + 0.01
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(panels):
                ax.axis("off")
                continue
            title, pts = list(panels.items())[j]
            x_max = max(pt[1] for pt in pts) * 1.45 or 1.0
            y_max = max(pt[2] for pt in pts) * 1.25 or 1.0
            offsets = _label_offsets(pts, x_max, y_max)
            for (label, size, speed, q), dy in zip(pts, offsets):
                color = cmap((q - lo) / (hi - lo)) if q is not None else "0.65"
                ax.scatter([size], [speed], s=70, color=color, edgecolors="black", linewidths=0.5, zorder=3)
                ax.annotate(label, (size, speed), textcoords="offset points", xytext=(5, dy), fontsize=7)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("artifact size (MB)")
            ax.set_ylabel(unit)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(0, x_max)
            ax.set_ylim(0, y_max)
        if qualities:
            sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
            fig.colorbar(sm, ax=axes[i].tolist(), label=qlabel + " (grey: no gate)", shrink=0.9)
    fig.suptitle(f"edgekit bench: size vs speed vs gate quality, {report.created_at}", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_report_dir(folder: str | os.PathLike) -> Path:
    """Check --report before any run: a folder we can write, and matplotlib there for the chart."""
    d = Path(folder).expanduser().absolute()
    if d.exists() and not d.is_dir():
        raise ConfigError(f"--report {d} exists and is not a folder")
    if not d.exists():
        probe_writable(d, "choose another --report folder")
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("matplotlib (for the --report chart)", "report") from exc
    return d


def write_report(report: BenchReport, folder: str | os.PathLike) -> dict[str, Path]:
    """Write bench.json, bench.md and bench.png into ``folder`` (created if needed)."""
    d = check_report_dir(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "bench.json", "markdown": d / "bench.md", "chart": d / "bench.png"}
    write_json_atomic(paths["json"], report.to_json())
    write_text_atomic(paths["markdown"], markdown(report))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench.png.", suffix=".png")
    os.close(fd)
    try:
        chart(report, Path(tmp))
        os.replace(tmp, paths["chart"])
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return paths
