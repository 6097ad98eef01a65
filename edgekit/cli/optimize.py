"""``edgekit optimize``: what to ship for a device: every candidate exported, gated, measured, and the best chosen."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.options import context_option, force_option, json_option, threads_option
from edgekit.cli.output import err, out, print_json, print_table, rows_table


class Objective(str, Enum):
    decode = "decode"
    prefill = "prefill"
    size = "size"
    ttft = "ttft"


SOURCE_HELP = ("A local Hugging Face decoder folder (works offline), a hub id such as org/name (online), or "
               "packaged:smollm2.")
QUANTS_HELP = (
    "Candidates' quantization types, comma-separated or repeated (GGUF: f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, "
    "q4_0; ONNX: fp32, fp16, int8, int4), or 'all'. Default: GGUF f16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0 and ONNX "
    "int8, int4: f16 is the near-lossless anchor for high quality floors, the rest span llama.cpp's usual sizes "
    "and the fused ONNX decoder's; ONNX fp32 (4 bytes a weight) and fp16 (few fp16 kernels in onnxruntime's CPU "
    "provider) are slower and larger than f16 GGUF for the same quality, so they are tried only when named. "
    "export_onnx exposes no int4 block size or rounding algorithm, so there are no such knobs to search."
)


def _table(rows: list[dict[str, str]], title: str):
    return rows_table(rows, title, left=("candidate", "status", "gate", "cache", "plan"), no_wrap=("candidate",))


def plan_rows(report) -> list[dict[str, str]]:
    """The dry run's table: each candidate, what prediction says of it, whether it is cached, what would happen."""
    from edgekit.optimize.plan import mb

    rows = []
    for c in report.candidates:
        e = c.plan
        rows.append({
            "candidate": c.label, "bpw": f"{c.bpw:g}", "size (predicted)": mb(e.size_bytes),
            "memory (predicted)": mb(e.memory_bytes) + ("" if e.memory_has_runtime else " +runtime"),
            f"decode tok/s on {report.target}": (f"{e.decode_tps:.1f}" if e.decode_tps is not None
                                                 else "no calibration yet"),
            "cache": "yes" if c.cached else "no",
            "plan": (f"pruned: {c.reason}" if c.status == "pruned"
                     else "reuse (cached)" if c.cached else "export, gate, measure"),
        })
    return rows


@app.command("optimize")
def optimize_cmd(
    source: str = typer.Argument(..., help=SOURCE_HELP, show_default=False),
    target: str = typer.Option(
        ..., "--target", "-t", show_default=False,
        help="The device to ship to: a preset ('edgekit targets list'), 'host', or a .toml profile. Its threads "
        "run the candidates, its app RAM budget bounds their memory, its roofline predicts their speed.",
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", metavar="OUT", show_default=False,
        help="Folder to create: OUT/artifact (the chosen artifact) and optimize.md, optimize.json, optimize.png "
        "(every candidate). Required unless --dry-run.",
    ),
    device: Optional[str] = typer.Option(
        None, "--device", "-d", metavar="NAME", show_default=False,
        help="Measure each candidate on this registered device over SSH ('edgekit devices add') and choose from "
        "those measurements. Default: none (measured on this machine, predicted for --target).",
    ),
    # The four constraints are checked by edgekit.optimize (finite, above 0): one message for NaN, inf and 0 alike.
    min_top1: Optional[float] = typer.Option(
        None, "--min-top1", metavar="X", show_default=False,
        help="Quality floor: the gate's top-1 agreement with the original model at least X (a fraction, 0 < X <= 1, "
        "e.g. 0.85). Default: none (only the gate's own bounds per quantization type).",
    ),
    max_kl: Optional[float] = typer.Option(
        None, "--max-kl", metavar="Y", show_default=False,
        help="Quality ceiling: the gate's mean next-token KL divergence from the original model at most Y (nats, "
        "> 0, e.g. 0.05). Default: none. With --min-top1 too, both apply.",
    ),
    max_size: Optional[float] = typer.Option(
        None, "--max-size", metavar="MB", show_default=False,
        help="Artifact size (all its files) at most this many MB (1 MB = 10^6 bytes, > 0). Default: no limit.",
    ),
    min_decode: Optional[float] = typer.Option(
        None, "--min-decode", metavar="TOKS", show_default=False,
        help="Decode speed on the target at least TOKS tokens/s (> 0): predicted for --target from this machine's "
        "measurements, measured with --device. Default: no minimum.",
    ),
    objective: Objective = typer.Option(
        Objective.decode, "--objective",
        help="What the choice maximises among the candidates meeting every constraint: decode or prefill "
        "tokens/s, or minimises: ttft (time to first token, seconds) or size (bytes). Ties (within 0.5%) go to the "
        "smaller artifact.",
    ),
    formats: List[str] = typer.Option(
        [], "--formats", show_default=False,
        help="Restrict the candidates' formats: gguf, onnx (comma-separated or repeated). Default: both.",
    ),
    quants: List[str] = typer.Option([], "--quants", show_default=False, help=QUANTS_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (candidates, what prediction already rules out, what is cached) "
        "and export nothing.",
    ),
    quality_prune: bool = typer.Option(
        True, "--quality-prune/--no-quality-prune",
        help="Once a candidate misses the quality floor by more than a margin (top-1 0.04, KL x1.5), prune the "
        "candidates of its format with fewer effective bits without exporting them (quality taken as monotone in "
        "bits); --no-quality-prune tries them all.",
    ),
    force: bool = force_option("Replace OUT if it is an earlier optimize output or empty."),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", help="Gate prompts, one per line (default: 20 built-in).",
    ),
    runs: int = typer.Option(3, "--runs", min=1, help="Measured bench runs per candidate."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up runs per candidate."),
    prompt_tokens: int = typer.Option(
        128, "--prompt-tokens", min=1, help="Bench prompt length in tokens (prefill, TTFT).",
    ),
    gen_tokens: int = typer.Option(64, "--gen-tokens", min=2, help="Bench generated tokens per run."),
    threads: Optional[int] = threads_option("Threads on the target (default and maximum: its profile's)."),
    host_threads: Optional[int] = typer.Option(
        None, "--host-threads", min=1, help="Threads of the runs on this machine (default: the target's, at most "
        "this machine's CPUs; predictions come from a one-thread calibration either way).",
    ),
    context: Optional[int] = context_option(
        "KV cache positions (tokens) the memory check counts (default: the model's context, at most 4096).",
    ),
    accept_new_host_key: bool = typer.Option(
        False, "--accept-new-host-key", help="With --device: trust its SSH host key if not yet in known_hosts.",
    ),
    as_json: bool = json_option("Print the JSON report on stdout instead of the tables."),
):
    """Choose what to ship: export, gate and measure GGUF and ONNX candidates, and pick the best that meets every
    constraint.

    Prediction prunes first (what cannot fit the target's RAM budget, the size limit or the decode minimum is never
    exported), and a format's lower bits once a higher one misses the quality floor. Each survivor is exported and
    gated once (cached: a second run, for any target, reuses it), measured on this machine (or --device) and
    predicted for the target. OUT gets the chosen artifact and the report with every candidate, why each was
    pruned or rejected, and the Pareto front. Nothing meets the constraints: exit 2 with the closest candidates.
    """
    from edgekit.errors import ConfigError
    from edgekit.optimize import optimize
    from edgekit.optimize.report import candidate_rows, tie_text
    from edgekit.optimize.view import BoardView

    if output is None and not dry_run:
        raise ConfigError("pass -o/--output OUT for the chosen artifact and the report, or --dry-run for the plan")
    view = BoardView(err)
    result = optimize(
        source, target, out=output, device=device, min_top1=min_top1, max_kl=max_kl, max_size_mb=max_size,
        min_decode=min_decode, objective=objective.value, formats=formats or None, quants=quants or None,
        dry_run=dry_run, force=force, prompts=prompts, runs=runs, warmup=warmup, prompt_tokens=prompt_tokens,
        gen_tokens=gen_tokens, threads=threads, host_threads=host_threads, context=context,
        quality_prune=quality_prune, accept_new_host_key=accept_new_host_key, progress=view,
    )
    report = result.report
    if as_json:
        print_json(report.to_json())
        return
    if dry_run:
        print_table(_table(plan_rows(report), f"plan: {report.source} for {report.target} (nothing exported)"))
        return
    print_table(_table(candidate_rows(report), f"candidates for {report.target} (* on the Pareto front)"))
    out.print(f"Pareto front (quality vs speed vs size): {', '.join(report.pareto) or '-'}")
    choice = result.choice
    k = report.counters
    out.print(f"[bold]choice[/]: {choice.label} -> {result.artifact}  ({k.exports} exported, {k.exports_reused} from "
              f"the cache, {k.benches} benched, {report.wall_s:.0f} s)")
    if len(report.tied) > 1:
        out.print(f"a tie: {tie_text(report)}")
    for name in ("markdown", "chart", "json"):
        if name in result.paths:
            err.print(f"[green]wrote[/] {result.paths[name]}")
