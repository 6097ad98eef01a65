"""Render and write an optimize run: the candidates' table (Markdown), the chart (PNG), the JSON, and OUT.

OUT is one folder written whole through a staging folder beside it and a rename
(:mod:`edgekit.fileio`): ``artifact/`` (the chosen artifact, hard-linked from edgekit's
cache where the file system allows, else copied) and ``optimize.json``, ``optimize.md``
and ``optimize.png``. ``force`` replaces only an earlier optimize output or an empty folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.fileio import (
    OS_LITTER, atomic_path, new_staging_folder, probe_writable, read_json_dict, replace_folder, sweep_stale_staging,
    terminate_cleanly, write_json_atomic, write_text_atomic,
)
from edgekit.optimize.decide import BUSY_BAND, BUSY_WAIT, TIE_FLOOR, busy_wait, quality_axis
from edgekit.optimize.plan import floor_text, mb
from edgekit.optimize.schema import REPORT_SCHEMA, CandidateRecord, OptimizeReport
from edgekit.profiler.report import markdown_table

OUT_NAMES = ("artifact", "optimize.json", "optimize.md", "optimize.png")


def _f(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _n(n: int | None, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _status(c: CandidateRecord, r: OptimizeReport | None = None) -> str:
    if c.status in ("pruned", "rejected", "failed"):
        return f"{c.status}: {c.reason}"
    if r is not None and len(r.tied) > 1 and c.label in r.tied:
        return "chosen: " + tie_text(r) if c.status == "chosen" else f"{c.status} (tied)"
    return c.status


def tie_text(r: OptimizeReport) -> str:
    """Why the choice won a tie, e.g. "the smallest of 3 tied within ±15% on decode (the speeds' noise)"."""
    if len(r.tied) < 2:
        return ""
    wait = busy_wait(r.candidates)
    why = (f"the host was busy: a bench waited {wait:.0%} of its time for a CPU" if r.tie_band
           and r.tie_band >= BUSY_BAND and wait is not None and wait > BUSY_WAIT else "the speeds' noise")
    within = f"within ±{r.tie_band:.0%} on {r.constraints.objective} ({why})" if r.tie_band else \
        f"on {r.constraints.objective}"
    return f"the smallest of {len(r.tied)} tied {within}: {', '.join(r.tied)}"


def candidate_rows(report: OptimizeReport) -> list[dict[str, str]]:
    """One row per candidate: what it is, its gate, size, measured and predicted speed, status and why."""
    rows = []
    place = report.device or "host"
    for c in report.candidates:
        g = c.gate.metrics if c.gate is not None else {}
        m, p = c.measured, c.predicted
        est = c.plan.decode_tps
        rows.append({
            "candidate": c.label + (" *" if c.pareto else ""),
            "bpw": f"{c.bpw:g}",
            "top-1": _f(g.get("top1"), 3), "KL": "-" if "kl_mean" not in g else f"{g['kl_mean']:.4f}",
            "gate": c.gate.status if c.gate is not None else "-",
            "size": mb(c.size_bytes) if c.size_bytes is not None else f"~{mb(c.plan.size_bytes)}",
            f"decode tok/s ({place})": _f(m.decode_tps if m else None),
            f"decode tok/s ({report.target})": _f(p.decode_tps if p else None) if p else (
                f"~{est:.1f}" if est is not None else "-"),
            f"prefill tok/s ({report.target})": _f(p.prefill_tps if p else None, 0),
            f"memory ({report.target})": mb(p.memory_bytes) if p else f"~{mb(c.plan.memory_bytes)}",
            **({f"peak RSS ({place})": mb(m.memory_bytes) if m else "-"} if report.device else {}),  # what it judged
            "cache": "yes" if c.cached else ("new" if c.exported_now else "-"),
            "status": _status(c, report),
        })
    return rows


def constraint_lines(r: OptimizeReport) -> list[str]:
    c = r.constraints
    parts = [floor_text(c) or "the gate's default bounds only"]
    if c.max_size_mb is not None:
        parts.append(f"size <= {c.max_size_mb:g} MB")
    if c.min_decode is not None:
        parts.append(f"decode >= {c.min_decode:g} tok/s on {r.device or r.target}")
    parts.append(f"memory within {r.target}'s app RAM budget ({mb(r.ram_budget_bytes)})")
    return parts


def markdown(r: OptimizeReport) -> str:
    s, k = r.settings, r.counters
    where = (f"measured on device {r.device} (the choice is made from these measurements), predicted for the target"
             if r.device else "measured on this machine, predicted for the target")
    parts = [
        "# edgekit optimize" + (" (plan only)" if r.dry_run else ""), "",
        f"{r.created_at}, edgekit {r.edgekit_version}. Source `{r.source}` (content sha256 {r.source_sha256[:12]}...), "
        f"target **{r.target}** ({_n(r.target_threads, 'thread')}), {where}.", "",
        f"Constraints: {'; '.join(constraint_lines(r))}. Objective: **{r.constraints.objective}** "
        "(candidates within the speed measurements' noise of the best, at least "
        f"{TIE_FLOOR:.0%}, {BUSY_BAND:.0%} when the host was busy, are tied: the smaller artifact wins, then the "
        "better gated)."
        + ("" if r.device else " The predictions of one runtime's kernels share one calibration: the least "
           "disturbed of this run's benches (`predicted_from`)."), "",
        f"Candidates: {k.candidates}; pruned before export: {k.pruned_before_export}; exports made: {k.exports}, "
        f"reused from the cache: {k.exports_reused}; benches made: {k.benches}, reused: {k.benches_reused}; "
        f"{r.wall_s:.1f} s. Bench: {s.runs} run{'s' if s.runs != 1 else ''} (+{s.warmup} warm-up), "
        f"{s.prompt_tokens} prompt and "
        f"{s.gen_tokens} generated tokens, "
        + (f"{_n(r.target_threads, 'thread')} on {r.device}" if r.device else f"{_n(s.host_threads, 'host thread')}")
        + f"; KV cache at {s.context} positions.", "",
        "## Candidates", "", markdown_table(candidate_rows(r)), "",
        "`*`: on the Pareto front (quality vs speed vs size). `~`: predicted from the parameter count before "
        "export. Pruned: ruled out before export, by prediction or because a higher-bit candidate of the same "
        "format already missed the quality floor. Rejected: exported, gated (and measured), then missed a "
        "constraint.",
    ]
    if r.pareto:
        parts += ["", "## Pareto front", "", ", ".join(r.pareto)]
    if r.choice:
        c = r.candidate(r.choice)
        speed = c.measured if r.device else c.predicted
        parts += ["", "## Choice", "", f"**{c.label}**: {mb(c.size_bytes)}, "
                  f"top-1 {c.metric('top1') or 0:.3f}, KL {c.metric('kl_mean') or 0:.4f}, decode "
                  f"{_f(speed.decode_tps if speed else None)} tok/s on {r.device or r.target}"
                  + (f" (±{r.tie_band:.0%})" if r.tie_band else "")
                  + (f"; written to `{r.artifact}`" if r.artifact else f"; in the cache at `{c.artifact}`")
                  + (f". A tie: {tie_text(r)}." if len(r.tied) > 1 else "")]
    elif not r.dry_run:
        parts += ["", "## Choice", "", "none: no candidate meets every constraint"]
    return "\n".join(parts) + "\n"


def chart(r: OptimizeReport, path: Path) -> None:
    """Size vs the target's speed, colour = gate quality; the Pareto front ringed, the choice starred."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib (for the optimize chart)", "report") from exc
    metric, up = quality_axis(r.constraints)
    speed_of = "decode" if r.constraints.objective in ("size", "ttft") else r.constraints.objective
    pts = []
    for c in r.candidates:
        s = c.measured if r.device else c.predicted
        v = getattr(s, f"{speed_of}_tps") if s is not None else None
        size = c.size_bytes
        if v is None:  # never exported or measured: the plan's estimate, drawn hollow
            v, size = (c.plan.decode_tps if speed_of == "decode" else c.plan.prefill_tps), c.plan.size_bytes
        if v is not None and size is not None:
            pts.append((c, size / 1e6, v, c.metric(metric)))
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    qs = [q for _c, _x, _y, q in pts if q is not None]
    lo, hi = (min(qs), max(qs)) if qs else (0.0, 1.0)
    hi = hi if hi - lo > 1e-6 else lo + 0.01
    x_max = max([x for _c, x, _y, _q in pts] + [r.constraints.max_size_mb or 0, 1.0]) * 1.35
    y_max = max([y for _c, _x, y, _q in pts] + [r.constraints.min_decode or 0, 1.0]) * 1.15
    for (c, x, y, q), dy in zip(pts, _label_offsets(pts, x_max, y_max)):
        color = cmap((q - lo) / (hi - lo)) if q is not None else "none"
        if c.pareto:  # a ring around the point: the front is over three axes, a line on two would mislead
            ax.scatter([x], [y], s=260, facecolors="none", edgecolors="tab:orange", linewidths=2, zorder=2)
        marker = "*" if c.status == "chosen" else ("x" if c.status in ("rejected", "failed") else "o")
        ax.scatter([x], [y], s=240 if marker == "*" else 60, marker=marker,
                   c=[color] if marker != "x" else ["tab:red"], edgecolors="black" if marker != "x" else None,
                   linewidths=0.5, zorder=3)
        leader = dict(arrowstyle="-", linewidth=0.5, color="0.5") if abs(dy) > 14 else None  # a label moved away
        ax.annotate(f"{c.label} ({c.status})", (x, y), textcoords="offset points", xytext=(8, dy), fontsize=7,
                    arrowprops=leader)
    if any(c.pareto for c, *_rest in pts):
        ax.scatter([], [], s=120, facecolors="none", edgecolors="tab:orange", linewidths=2,
                   label="Pareto front (quality, speed, size)")
    if qs:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
        fig.colorbar(sm, ax=ax, label=f"gate {metric} ({'higher' if up else 'lower'} is better; hollow: not exported)")
    place = f"{r.device} (measured)" if r.device else f"{r.target} (predicted)"
    cons = r.constraints
    if cons.max_size_mb is not None:
        ax.axvline(cons.max_size_mb, color="tab:red", linewidth=0.8, linestyle=":", label="size limit")
    if cons.min_decode is not None and speed_of == "decode":
        ax.axhline(cons.min_decode, color="tab:red", linewidth=0.8, linestyle="-.", label="decode minimum")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("artifact size (MB)")
    ax.set_ylabel(f"{speed_of} tok/s on {place}")
    ax.set_xlim(0, x_max)
    ax.set_ylim(0, y_max)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"edgekit optimize {r.source} for {r.target}: choice {r.choice or 'none'}", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _label_offsets(pts, x_max: float, y_max: float, height: float = 300.0) -> list[float]:
    """Vertical offsets (points) of the labels, so that labels of nearby points do not overprint."""
    # label boxes in axes fractions; the markers are obstacles too
    placed = [(x / x_max - 0.012, y / y_max - 0.025, x / x_max + 0.012, y / y_max + 0.025) for _c, x, y, _q in pts]
    out = [4.0] * len(pts)
    for i in sorted(range(len(pts)), key=lambda i: -pts[i][2]):
        c, x, y, _q = pts[i]
        x0, y0 = x / x_max + 0.012, y / y_max
        x1 = x0 + 0.0105 * (len(c.label) + len(c.status) + 3)
        for dy in (4, -11, 14, -21, 24, -31, 34, -41, 44):
            box = (x0, y0 + dy / height, x1, y0 + (dy + 8) / height)
            if not any(box[0] < p[2] and p[0] < box[2] and box[1] < p[3] and p[1] < box[3] for p in placed):
                break
        placed.append(box)
        out[i] = float(dy)
    return out


# ---- OUT -------------------------------------------------------------------------------

def _is_optimize_output(folder: Path) -> bool:
    names = {n for n in os.listdir(folder) if n not in OS_LITTER}
    return names <= set(OUT_NAMES) and read_json_dict(folder / "optimize.json").get("schema") == REPORT_SCHEMA


def check_out(out, force: bool) -> Path:
    """Check OUT before any work: new, or (with ``force``) an earlier optimize output or an empty folder."""
    p = Path(out).expanduser().absolute()
    if p.exists() or p.is_symlink():
        if not force:
            raise ConfigError(f"{p} already exists: choose another out= or pass force=True to replace it",
                              param=("out", "force"))
        if not p.is_dir() or p.is_symlink():
            raise ConfigError(f"{p} exists and is not a folder: choose another out=", param="out")
        if os.listdir(p) and not _is_optimize_output(p):
            raise ConfigError(f"{p} is not an earlier optimize output: force=True replaces only one of those or an "
                              "empty folder; choose another out=", param=("out", "force"))
    probe_writable(p, "choose another out=", param="out")
    try:
        import matplotlib  # noqa: F401  (the report's chart: checked before the work, not after it)
    except ImportError as exc:
        raise MissingDependencyError("matplotlib (for the optimize chart)", "report") from exc
    return p


def check_apart(out: Path, source: Path) -> None:
    """Refuse an OUT inside the source model's folder (a run would write into the model) or one that holds it
    (``force`` would replace the model with the output)."""
    o, s = out.resolve(), source.resolve()
    if o == s or s in o.parents:
        raise ConfigError(f"{out} is inside the source model folder {source}: choose an out= outside it",
                          param="out")
    if o in s.parents:
        raise ConfigError(f"{out} holds the source model folder {source}: choose another out=", param="out")


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of the artifact folder ``src``: files hard-linked where possible, copied otherwise."""
    for root, _dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            try:
                os.link(Path(root) / name, dst / rel / name)
            except OSError:
                shutil.copy2(Path(root) / name, dst / rel / name)


def write_outputs(report: OptimizeReport, out: Path, artifact: Path, force: bool) -> tuple[Path, dict[str, Path]]:
    """Write OUT whole: the chosen artifact and the report, staged beside OUT and renamed into place."""
    out = check_out(out, force)
    with terminate_cleanly():
        out.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_staging(out)
        stage = new_staging_folder(out)
        try:
            _link_tree(artifact, stage / "artifact")
            report.artifact = str(out / "artifact")
            write_json_atomic(stage / "optimize.json", report.to_json())
            write_text_atomic(stage / "optimize.md", markdown(report))
            with atomic_path(stage / "optimize.png", suffix=".png") as tmp:
                chart(report, tmp)
            replace_folder(stage, out)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    return out / "artifact", {"json": out / "optimize.json", "markdown": out / "optimize.md",
                              "chart": out / "optimize.png"}
