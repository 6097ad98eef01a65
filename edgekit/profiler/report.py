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

import os
from pathlib import Path

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.fileio import atomic_path, probe_writable, write_json_atomic, write_text_atomic
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


# The predicted table's columns, each titled with what it holds and where it comes from: a decoder's speed is
# decode tokens/s, an encoder's is items/s at batch 32, and a row holds "-" in the other kind's columns.
PREDICTED_COLUMNS = {
    "common": ("artifact", "target", "threads", "bound"),
    "decoder": ("decode tok/s (predicted)", "decode tok/s (measured on host)", "prefill tok/s (predicted)"),
    "encoder": ("items/s at batch 32 (predicted)", "items/s at batch 32 (measured on host)"),
    "memory": ("memory (predicted)", "RAM budget", "fits", "host peak RSS > budget"),
}


def prediction_rows(report: BenchReport) -> list[dict[str, str]]:
    """One row per artifact and target: the prediction beside the host measurement of the same quantity."""
    rows, kinds = [], set()
    for r in report.results:
        for p in r.predictions:
            check = next((c for c in r.ram_checks if c.target == p.target), None)
            if p.encoder_items_per_s is not None or (r.encoder is not None and p.decode_tps is None):
                kinds.add("encoder")
                host = r.encoder.batches["32"].items_per_s if r.encoder and "32" in r.encoder.batches else None
                speed = dict(zip(PREDICTED_COLUMNS["encoder"], (_f(p.encoder_items_per_s), _f(host))))
            else:
                kinds.add("decoder")
                host = r.decoder.decode_tps.median if r.decoder else None
                speed = dict(zip(PREDICTED_COLUMNS["decoder"], (_f(p.decode_tps), _f(host), _f(p.prefill_tps))))
            rows.append({
                "artifact": r.label, "target": p.target, "threads": str(p.threads), "bound": p.bound, **speed,
                "memory (predicted)": mb(p.memory_bytes), "RAM budget": mb(p.ram_budget_bytes),
                "fits": "yes" if p.fits else "NO",
                "host peak RSS > budget": "-" if check is None else ("YES" if check.exceeds_budget else "no"),
            })
    cols = [c for part, names in PREDICTED_COLUMNS.items() if part in kinds or part in ("common", "memory")
            for c in names]
    return [{c: row.get(c, "-") for c in cols} for row in rows]


def md_cell(text: object) -> str:
    """A Markdown table cell: ``\\`` and ``|`` escaped and line breaks flattened, so every cell stays in its
    column (GitHub splits a row at each ``|`` not escaped by a backslash, itself not escaped)."""
    return " ".join(str(text).splitlines()).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(rows: list[dict[str, str]]) -> str:
    """A Markdown table of ``rows`` (columns: every key, in order of first appearance; "-" where a row has none)."""
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(md_cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(md_cell(row.get(c, "-")) for c in cols) + " |" for row in rows]
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
    on_devices = any(r.device for r in report.results)
    parts += ["", "## Measured on the devices" if on_devices else "## Measured on the host", "",
              markdown_table(measured_rows(report)), "",
              "CPU wait: share of the runs' thread time spent waiting for a CPU (other processes); above about 10% "
              "the timings are pessimistic. The calibration behind the predictions is not: it is made on the CPU "
              "time of a one-thread run, which waiting does not change."]
    if on_devices:  # edgekit/devices: each device measured against edgekit's prediction for it
        parts += ["", "## Measured on devices vs predicted", "", markdown_table(device_rows(report)), "",
                  "error = predicted / measured - 1: how far edgekit's roofline (calibrated on this machine) is from "
                  "the device; 'predicted for' names the profile used (detected on the device, or a preset)."]
    preds = prediction_rows(report) if not on_devices else []
    if preds:
        parts += ["", "## Predicted per target", "", markdown_table(preds)]
    busy = [r.label for r in report.results if r.calibration and (r.calibration.cpu_wait_fraction or 0) > 0.10]
    if busy:
        parts += ["", f"Warning: the calibration runs of {', '.join(busy)} waited more than 10% of their time for a "
                      "CPU; their predictions are pessimistic. Bench again on a quieter machine."]
    failed = [r for r in report.results if r.error]
    if failed:
        parts += ["", "## Failed runs", ""] + [f"- {r.device + ' / ' if r.device else ''}{r.label}: {r.error}"
                                              for r in failed]
    return "\n".join(parts) + "\n"


ROWS = (("decoder", "decode tok/s", "gate top-1 agreement"), ("encoder", "items/s at batch 32", "gate cosine"))


def _points(report: BenchReport) -> dict[str, dict[str, list]]:
    """{row kind: {panel title: [(label, size MB, speed, quality or None)]}}: host measured, then each target."""
    rows: dict[str, dict[str, list]] = {}
    for r in report.results:
        q = r.gate.value if r.gate is not None else None
        row = "decoder" if r.kind == "decoder" else "encoder"
        panels = rows.setdefault(row, {"host (measured)": []})
        place = panels.setdefault(f"{r.device} (measured)" if r.device else "host (measured)", [])
        if r.decoder is not None:
            place.append((r.label, r.size_bytes / 1e6, r.decoder.decode_tps.median, q))
        elif r.encoder is not None and "32" in r.encoder.batches:
            place.append((r.label, r.size_bytes / 1e6, r.encoder.batches["32"].items_per_s, q))
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
    checks = _check_points(report)
    n_cols = max([len(rows.get(k, {})) for k in kinds] + [1])
    n_rows = len(kinds) + (1 if checks else 0)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.4 * n_cols + 1.2, 3.9 * n_rows), squeeze=False,
                             constrained_layout=True)
    if checks:
        _prediction_panel(axes[-1][0], checks)
        for ax in axes[-1][1:]:
            ax.axis("off")
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


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0f}%"


def device_rows(report: BenchReport) -> list[dict[str, str]]:
    """One row per (device, artifact): measured there, edgekit's prediction for it, the error; or why it failed."""
    rows = []
    for r in report.results:
        if r.device is None:
            continue
        c = r.check
        row = {"device": r.device, "artifact": r.label,
               "status": f"{r.status}: {r.failure.replace('_', ' ')}" if r.failure else r.status, "threads": str(r.threads)}
        if r.decoder is not None:
            d = r.decoder
            row.update({"decode tok/s": _f(d.decode_tps.median), "decode pred": _f(c.decode_tps_predicted) if c else "-",
                        "decode err": _pct(c.decode_error_pct) if c else "-", "prefill tok/s": _f(d.prefill_tps.median),
                        "prefill pred": _f(c.prefill_tps_predicted) if c else "-",
                        "prefill err": _pct(c.prefill_error_pct) if c else "-"})
        elif r.encoder is not None and "32" in r.encoder.batches:
            row.update({"items/s (32)": _f(r.encoder.batches["32"].items_per_s),
                        "items pred": _f(c.items_per_s_predicted) if c else "-",
                        "items err": _pct(c.items_error_pct) if c else "-"})
        row["peak RSS"] = mb(r.peak_rss_bytes.median if r.peak_rss_bytes else None)
        row["predicted for"] = f"{c.target} ({c.profile_source})" if c else "-"
        rows.append(row)
    return rows


def _check_points(report: BenchReport) -> list[tuple[str, float, float]]:
    """(label, predicted, measured) decode tok/s (encoders: items/s) of every device run with a prediction."""
    pts = []
    for r in report.results:
        c = r.check
        if c is None:
            continue
        for pred, meas in ((c.decode_tps_predicted, c.decode_tps_measured), (c.items_per_s_predicted, c.items_per_s_measured)):
            if pred and meas:
                pts.append((f"{r.device}/{r.label}", pred, meas))
    return pts


def _prediction_panel(ax, pts: list[tuple[str, float, float]]) -> None:
    """Predicted against measured on the devices: the diagonal is a perfect prediction, the band +-30%."""
    top = max(max(p, m) for _l, p, m in pts) * 1.3
    ax.plot([0, top], [0, top], color="0.3", linewidth=1)
    ax.fill_between([0, top], [0, top / 1.3], [0, top * 1.3], color="0.85", zorder=0, label="within 30%")
    for label, pred, meas in pts:
        ax.scatter([meas], [pred], s=60, color="tab:blue", edgecolors="black", linewidths=0.5, zorder=3)
        ax.annotate(f"{label} ({(pred / meas - 1) * 100:+.0f}%)", (meas, pred), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("measured on the device (tok/s; encoders: items/s)")
    ax.set_ylabel("predicted by edgekit")
    ax.set_title("devices: predicted vs measured", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")


def check_report_dir(folder: str | os.PathLike) -> Path:
    """Check --report before any run: a folder we can write, and matplotlib there for the chart."""
    d = Path(folder).expanduser().absolute()
    if d.exists() and not d.is_dir():
        raise ConfigError(f"folder={d} exists and is not a folder", param="folder")
    probe_writable(d / "bench.json" if d.is_dir() else d, "choose another folder=", param="folder")
    for name in ("bench.json", "bench.md", "bench.png"):  # the only files a report writes; nothing else is touched
        if (d / name).is_dir():
            raise ConfigError(f"{d / name} is a folder: the report writes a file there; choose another folder=",
                              param="folder")
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("matplotlib (for the report's chart)", "report") from exc
    return d


def write_report(report: BenchReport, folder: str | os.PathLike) -> dict[str, Path]:
    """Write bench.json, bench.md and bench.png into ``folder`` (created if needed)."""
    d = check_report_dir(folder)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"json": d / "bench.json", "markdown": d / "bench.md", "chart": d / "bench.png"}
    write_json_atomic(paths["json"], report.to_json())
    write_text_atomic(paths["markdown"], markdown(report))
    with atomic_path(paths["chart"], suffix=".png") as tmp:  # the suffix tells matplotlib the format
        chart(report, tmp)
    return paths
