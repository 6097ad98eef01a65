"""``edgekit bench``: measure artifacts (ONNX or GGUF) on this machine, predict them for targets, report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.options import context_option, json_option, threads_option
from edgekit.cli.output import err, print_json, print_table, rows_table

TARGET_HELP = ("Target device (repeatable): a preset ('edgekit targets list'), 'host', or a .toml profile. Each gets "
               "a prediction beside the host measurement and a RAM-budget check; with one target the runs use its "
               "thread count (at most this machine's CPUs).")

# the text columns of bench's tables (the rest are numbers, right-justified)
TEXT_COLUMNS = ("artifact", "format", "precision", "status", "gate", "target", "bound")


def _table(rows: list[dict[str, str]], title: str):
    return rows_table(rows, title, left=TEXT_COLUMNS, no_wrap=("artifact",))


@app.command("bench")
def bench_cmd(
    artifacts: List[Path] = typer.Argument(
        ..., show_default=False,
        help="Artifact folders (ONNX or GGUF), bare .gguf/.onnx files, or packaged:smollm2-gguf.",
    ),
    target: List[str] = typer.Option([], "--target", "-t", help=TARGET_HELP, show_default=False),
    prompt_tokens: int = typer.Option(
        128, "--prompt-tokens", min=1,
        help="Prompt length in tokens (exact; encoders: tokens per text).",
    ),
    gen_tokens: int = typer.Option(
        128, "--gen-tokens", min=2,
        help="Tokens to generate per run (exact: generation ignores end-of-sequence).",
    ),
    runs: int = typer.Option(5, "--runs", min=1, help="Measured runs per artifact, each in a fresh process."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up runs per artifact (run, reported, not counted)."),
    threads: Optional[int] = threads_option("CPU threads per run (default: the target's, else all CPUs)."),
    context: Optional[int] = context_option("Context window to load with (default: the runtime's)."),
    timeout: float = typer.Option(
        600.0, "--timeout", min=0.1,
        help="Seconds before a run is killed and reported as failed.",
    ),
    batch_reps: int = typer.Option(
        5, "--batch-reps", min=1,
        help="Encoders: timed calls per batch size (1, 8, 32) per run.",
    ),
    device: List[str] = typer.Option(
        [], "--device", "-d", show_default=False, metavar="NAME",
        help="Run on this registered device over SSH ('edgekit devices add'); repeatable: devices run in parallel.",
    ),
    accept_new_host_key: bool = typer.Option(
        False, "--accept-new-host-key", help="With --device: trust a device's SSH host key not yet in known_hosts.",
    ),
    as_json: bool = json_option("Print the JSON report on stdout instead of the tables."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", metavar="FILE", show_default=False,
        help="Also write the JSON report to FILE (checked writable before the runs start).",
    ),
    report: Optional[Path] = typer.Option(
        None, "--report", metavar="DIR", show_default=False,
        help="Write bench.json, bench.md and the bench.png chart into DIR (checked before the runs start).",
    ),
):
    """Measure load time, time to first token, prefill and decode tokens/s, per-token latency p50/p90/p99 and peak RSS.

    Every run is a fresh process; its peak RSS comes from the kernel (wait4). Medians and ranges over the
    runs; warm-up runs are not counted. Encoders report batch latency and items/s at batch sizes 1, 8, 32.
    With --target, each artifact also gets the roofline prediction for that device (calibrated on this
    machine) and a check of its RAM budget. A run that crashes or times out is reported as failed and the
    other runs are kept: exit 1; a bad artifact or option: exit 2.
    """
    from edgekit.errors import ArtifactError, BenchRunError, ConfigError
    from edgekit.fileio import check_output_file, write_json_atomic
    from edgekit.profiler.bench import bench, report_errors
    from edgekit.profiler.report import check_report_dir, measured_rows, prediction_rows, write_report
    from edgekit.progress import RichProgress

    stray = next((a for a in artifacts if a.suffix == ".json" and not a.exists()), None)
    if as_json and stray is not None:  # the old '--json FILE'
        raise ConfigError(f"{stray} is not an artifact: --json prints the report on stdout; write it to a file "
                          f"with -o {stray}")
    if report is not None:
        check_report_dir(report)
    json_path = check_output_file(output, "out") if output is not None else None
    options = dict(targets=target, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, runs=runs, warmup=warmup,
                   threads=threads, context=context, timeout=timeout, batch_reps=batch_reps, progress=RichProgress(err))
    if device:  # on devices over SSH (edgekit/devices): measured there, predicted here, error in percent
        from edgekit.devices.bench import bench_devices

        result = bench_devices(artifacts, device, accept_new_host_key=accept_new_host_key, **options)
    else:
        result = bench(artifacts, **options)
    if as_json:
        print_json(result.to_json())
    elif device:
        from edgekit.cli.devices import print_device_report

        print_device_report(result)
    else:
        print_table(_table(measured_rows(result), f"measured on this machine ({result.settings.threads} threads)"))
        preds = prediction_rows(result)
        if preds:
            print_table(_table(preds, "predicted per target (roofline calibrated on this machine)"))
    busy = [r.label for r in result.results if r.calibration and (r.calibration.cpu_wait_fraction or 0) > 0.10]
    if busy:
        err.print(f"[yellow]warning[/]: runs of {', '.join(busy)} waited >10% of their time for a CPU (busy host): "
                  "timings and predictions are pessimistic")
    if json_path is not None:
        write_json_atomic(json_path, result.to_json())
        err.print(f"[green]wrote[/] {json_path}")
    if report is not None:
        paths = write_report(result, report)
        err.print(f"[green]wrote[/] {paths['markdown']}, {paths['chart']}, {paths['json']}")
    code, message = report_errors(result)
    if code == 2:
        kinds = {run.error_type for r in result.results for run in r.runs if run.user_error}
        raise (ConfigError if kinds & {"ConfigError", "ContextOverflowError"} else ArtifactError)(message)
    if code == 1:
        raise BenchRunError(message)
