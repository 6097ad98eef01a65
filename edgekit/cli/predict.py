"""``edgekit predict``: tokens/s and memory on a target before running there (or before downloading the model)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from edgekit import quants
from edgekit.cli import app
from edgekit.cli.options import context_option, json_option, threads_option
from edgekit.cli.output import err, human_size, out, print_json, print_table


@app.command("predict")
def predict_cmd(
    artifact: Optional[Path] = typer.Argument(
        None, show_default=False, help="An artifact folder or .gguf/.onnx file (or use --params/--quant).",
    ),
    target: List[str] = typer.Option(
        ..., "--target", "-t", show_default=False,
        help="Target device (repeatable): a preset ('edgekit targets list'), 'host', or a .toml profile.",
    ),
    params: Optional[str] = typer.Option(None, "--params", help="Model size without an artifact: 3.2B, 135M, 7e9."),
    quant: Optional[str] = typer.Option(
        None, "--quant",
        help="With --params: a GGUF type (" + ", ".join(q.name for q in quants.rows("gguf", export=True))
        + " and llama.cpp's other types) or an ONNX precision (" + ", ".join(q.name for q in quants.rows("onnx")) + ").",
    ),
    layers: Optional[int] = typer.Option(
        None, "--layers", min=1,
        help="With --params: transformer layers (for the KV cache).",
    ),
    kv_heads: Optional[int] = typer.Option(
        None, "--kv-heads", min=1,
        help="With --params: key/value heads (for the KV cache).",
    ),
    head_dim: Optional[int] = typer.Option(
        None, "--head-dim", min=1,
        help="With --params: head dimension (for the KV cache).",
    ),
    context: Optional[int] = context_option("Context the memory need is computed for (default: min(model's, 4096))."),
    threads: Optional[int] = threads_option("Threads on the target (default: the profile's)."),
    prompt_tokens: int = typer.Option(
        128, "--prompt-tokens", min=1,
        help="Prompt length for the prefill and decode speeds.",
    ),
    gen_tokens: int = typer.Option(
        128, "--gen-tokens", min=1,
        help="Generated tokens (decode speed is at the middle).",
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", metavar="REPORT.json",
        help="A bench JSON report to calibrate from (default: a short host run of ARTIFACT, or the last quiet "
        "'edgekit bench' of the same runtime).",
    ),
    as_json: bool = json_option("Print the predictions as JSON."),
):
    """Predict decode and prefill tokens/s and the memory need (weights + KV cache + runtime) on each target.

    Decode is memory-bound (bytes read per token / the target's bandwidth, with an efficiency calibrated
    on this machine), prefill compute-bound; e.g. 'will a 3B model at q4_k_m run at 5 tok/s on a Pi 5,
    and fit in its RAM?':  edgekit predict --target raspberry-pi-5 --params 3.2B --quant q4_k_m
    --layers 28 --kv-heads 8 --head-dim 128 --context 4096
    """
    from edgekit.errors import ConfigError
    from edgekit.profiler.api import predict_full
    from edgekit.progress import RichProgress
    from edgekit.targets import resolve_target

    if (artifact is None) == (params is None):
        raise ConfigError("pass either an ARTIFACT or --params with --quant (see edgekit predict --help)")
    if artifact is None and not quant:
        raise ConfigError("--params needs --quant (a GGUF type such as q4_k_m, or an ONNX precision such as int4)")
    profiles = [resolve_target(t) for t in target]
    results, cal = [], None
    for profile in profiles:
        pred, shape, cal = predict_full(
            profile, artifact, params=params, quant=quant, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
            context=context, threads=threads, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
            calibration=cal or calibration, progress=RichProgress(err),
        )
        results.append((pred, shape))
    if as_json:
        print_json({"calibration": cal.model_dump(mode="json"), "shape": results[0][1].model_dump(mode="json"),
                    "predictions": [p.model_dump(mode="json") for p, _ in results]})
        return
    shape = results[0][1]
    table = Table(title=f"predicted: {artifact or f'{params} params at {quant}'} ({shape.backend}, "
                        f"{human_size(shape.decode_bytes(0))} read per token)", title_justify="left")
    for col in ("target", "threads", "decode tok/s", "decode at ctx", "prefill tok/s", "bound", "weights", "KV cache",
                "runtime", "memory", "budget", "fits"):
        table.add_column(col, justify="left" if col in ("target", "bound", "fits") else "right")
    for p, _ in results:
        table.add_row(p.target + (" (prediction only)" if p.prediction_only_target else ""), str(p.threads),
                      f"{p.decode_tps:.1f}" if p.decode_tps else "-",
                      f"{p.decode_tps_at_context:.1f} @ {p.context}" if p.decode_tps_at_context else "-",
                      f"{p.prefill_tps:.0f}" if p.prefill_tps else "-", p.bound, human_size(p.weights_bytes),
                      human_size(p.kv_bytes) if shape.kv_bytes_per_position else "unknown", human_size(p.runtime_bytes),
                      human_size(p.memory_bytes), human_size(p.ram_budget_bytes),
                      "[green]yes[/]" if p.fits else "[red bold]NO[/]")
    print_table(table)
    if not shape.kv_bytes_per_position:
        out.print("KV cache not counted: pass --layers, --kv-heads and --head-dim for the memory need at --context.")
    how = f"{cal.threads} thread{'' if cal.threads == 1 else 's'}{', CPU time' if cal.timing == 'cpu' else ''}"
    out.print(f"calibrated on {cal.artifact} ({cal.backend}, {how}) on {cal.host}, {cal.measured_at}")
    if (cal.cpu_wait_fraction or 0.0) > 0.10:
        err.print(f"[yellow]warning[/]: the calibration run waited {cal.cpu_wait_fraction:.0%} of its time for a CPU "
                  "(busy host): the predictions are pessimistic")
