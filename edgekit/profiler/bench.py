"""``bench``: measure artifacts the same way for ONNX and GGUF, one fresh process per run.

Every run is ``python -m edgekit.profiler.worker`` (worker.py), spawned by a
tiny launcher that reaps it with ``os.wait4``: the kernel's ``ru_maxrss`` of
that process is the run's peak RSS, exact and without sampling (see LAUNCHER
for why the run is not forked from this process directly). A run that crashes or exceeds the
timeout is recorded as failed (its process group is killed) and the other runs
are kept. Warm-up runs (page cache, CPU clocks) are run and reported but not
counted in the medians.

After the runs, the artifact's host measurements become a roofline calibration
(roofline.py) against the host profile (targets/detect.py), and each requested
target gets a prediction beside the host measurement. The calibration is made on
the CPU times of a one-thread run (``_calibrate``: one more run when the bench
used more threads), which a busy host does not disturb.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit.version import __version__
from edgekit.errors import ConfigError, check_int
from edgekit.artifact import ResolvedArtifact, resolve_artifact
from edgekit.manifest import Manifest, now_iso
from edgekit.profiler.roofline import calibrate, predict, save_calibration
from edgekit.profiler.schema import (
    ArtifactResult, BatchSummary, BenchReport, BenchSettings, DecoderSummary, EncoderSummary, GateSummary, Percentiles,
    RamCheck, RunRecord, Spread,
)
from edgekit.profiler.shape import ModelShape, artifact_shape
from edgekit.progress import Progress, ensure
from edgekit.runtimes.threads import check_threads
from edgekit.targets.profile import TargetProfile
from edgekit.targets.resolve import resolve_target

GATE_METRIC = {"decoder": "top1", "encoder": "cos_mean", "classifier": "label_agreement"}


# ---- one run -----------------------------------------------------------------------

def worker_command(path: Path, *, threads: int | None, context: int | None, prompt_tokens: int, gen_tokens: int,
                   batch_reps: int) -> list[str]:
    cmd = [sys.executable, "-m", "edgekit.profiler.worker", str(path), "--prompt-tokens", str(prompt_tokens),
           "--gen-tokens", str(gen_tokens), "--batch-reps", str(batch_reps)]
    if threads:
        cmd += ["--threads", str(threads)]
    if context:
        cmd += ["--context", str(context)]
    return cmd


# A tiny launcher between the bench and each run. Linux carries a process's peak RSS across exec: a run
# forked straight from this (possibly large) process would report at least this process's RSS as its own
# ru_maxrss. The launcher is a bare interpreter (-S, a few MB); it spawns the run, reaps it with wait4 and
# writes the run's rusage to a file, then exits with the run's status.
LAUNCHER = r"""
import json, os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump({"maxrss_kb": usage.ru_maxrss, "status": status, "exit": os.waitstatus_to_exitcode(status)}, fh)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the run share the new session's group
    except ProcessLookupError:
        pass
    proc.wait()


def run_once(cmd: list[str], timeout: float) -> tuple[dict[str, Any], int | None, bool, int | None, float, str]:
    """Run ``cmd``; return (its JSON, exit code, timed out, peak RSS bytes from wait4, wall seconds, stderr tail).

    The exit code is negative (-signal) when the run was killed by a signal.
    """
    import json

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", prefix="edgekit-rusage-", suffix=".json") as usage_file:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, usage_file.name, *cmd], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:  # Ctrl-C or any error here: the run has its own session, so kill it ourselves
            _kill_group(proc)
            raise
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        lines = [ln for ln in out.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        stderr = err.read().decode("utf-8", "replace").strip()
        try:
            usage = json.loads(usage_file.read() or "{}")
        except ValueError:
            usage = {}
    code = usage.get("exit", proc.returncode)
    rss = usage["maxrss_kb"] * 1024 if "maxrss_kb" in usage else None
    data: dict[str, Any] = {}
    if lines:
        try:
            data = json.loads(lines[-1])
        except ValueError:
            data = {}
    return data, code, timed_out, rss, wall, stderr[-600:]


def _record(index: int, warmup: bool, data, code, timed_out, rss, wall, stderr, timeout) -> RunRecord:
    if timed_out:
        return RunRecord(index=index, warmup=warmup, ok=False, exit_code=code, timed_out=True, wall_s=wall,
                         peak_rss_bytes=rss, error=f"run exceeded the timeout of {timeout:g} s and was killed",
                         error_type="BenchRunError")
    if code == 0 and "error" not in data and data:
        return RunRecord(index=index, warmup=warmup, ok=True, exit_code=0, wall_s=wall, peak_rss_bytes=rss,
                         cpu_wait_fraction=data.get("cpu_wait_fraction"), measurements=data)
    err = data.get("error") or {}
    if err:
        message, etype = err.get("message", ""), err.get("type")
    elif code is not None and code < 0:
        message, etype = f"run crashed (signal {-code})", "BenchRunError"
    else:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        message, etype = f"run failed with exit status {code}: {last[:300]}", "BenchRunError"
    return RunRecord(index=index, warmup=warmup, ok=False, exit_code=code, wall_s=wall, peak_rss_bytes=rss,
                     error=message, error_type=etype, user_error=bool(err.get("user")))


# ---- summaries -------------------------------------------------------------------------

def spread(values: Sequence[float]) -> Spread:
    v = np.asarray(values, dtype=np.float64)
    return Spread(median=float(np.median(v)), min=float(v.min()), max=float(v.max()), n=int(v.size))


def percentiles(values: Sequence[float]) -> Percentiles:
    v = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = (float(x) for x in np.percentile(v, [50, 90, 99]))
    return Percentiles(p50=p50, p90=p90, p99=p99)


def summarize_decoder(runs: list[dict]) -> DecoderSummary:
    lat = [x for r in runs for x in r["token_latencies_s"]]
    fwd = [x for r in runs for x in r["decode_forward_s"]]
    lat_p, fwd_p = percentiles(lat or [0.0]), percentiles(fwd or [0.0])
    return DecoderSummary(
        prompt_tokens=runs[0]["prompt_tokens"], generated_tokens=runs[0]["generated_tokens"],
        decode_tokens=runs[0]["decode_tokens"], load_s=spread([r["load_s"] for r in runs]),
        ttft_s=spread([r["ttft_s"] for r in runs]), prefill_tps=spread([r["prefill_tps"] for r in runs]),
        decode_tps=spread([r["decode_tps"] for r in runs]), token_latency_s=lat_p, forward_s=fwd_p,
        token_overhead_s=max(0.0, lat_p.p50 - fwd_p.p50),
    )


def summarize_encoder(runs: list[dict]) -> EncoderSummary:
    batches = {}
    for size in runs[0]["batch_latencies_s"]:
        lat = [x for r in runs for x in r["batch_latencies_s"][size]]
        p = percentiles(lat)
        batches[size] = BatchSummary(latency_s=p, items_per_s=int(size) / p.p50 if p.p50 > 0 else 0.0)
    return EncoderSummary(prompt_tokens=runs[0]["prompt_tokens"], load_s=spread([r["load_s"] for r in runs]),
                          batches=batches)


def gate_summary(manifest: Manifest | None, kind: str) -> GateSummary | None:
    if manifest is None:
        return None
    gate = manifest.gate
    metric = GATE_METRIC.get(kind)
    return GateSummary(status=gate.status, metric=metric if metric in gate.metrics else None,
                       value=gate.metrics.get(metric), metrics=dict(gate.metrics))


# ---- the bench -------------------------------------------------------------------------

def preflight(path: str | os.PathLike) -> tuple[ResolvedArtifact, ModelShape]:
    """Refuse a path that is not a benchable artifact before any run: (the resolved artifact, its shape)."""
    art = resolve_artifact(path, check="sizes")  # ArtifactError for missing or foreign files
    return art, artifact_shape(art)  # ArtifactError for unreadable ones


def artifact_labels(paths: list[Path]) -> list[str]:
    labels, seen = [], {}
    for p in paths:
        base = p.name if p.is_dir() else p.stem
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return labels


def bench(
    artifacts: Sequence[str | os.PathLike], *, targets: Sequence[str | TargetProfile] = (), prompt_tokens: int = 128,
    gen_tokens: int = 128, runs: int = 5, warmup: int = 1, threads: int | None = None, context: int | None = None,
    timeout: float = 600.0, batch_reps: int = 5, host: TargetProfile | None = None, calibrate_host: bool = True,
    progress: Progress | None = None,
) -> BenchReport:
    """Bench each artifact (an ONNX or GGUF artifact folder, or a bare .gguf/.onnx file) on this machine.

    ``targets``: preset names, TOML paths, 'host' or profiles; each gets a prediction and a RAM-budget check.
    With one target and no ``threads``, runs use the target's thread count (at most the host's CPUs).
    ``host``: the host profile for calibration (default: detected, cached for 15 minutes).
    """
    from edgekit.targets.detect import host_profile, usable_cpus

    progress = ensure(progress)
    if not artifacts:
        raise ConfigError("pass at least one artifact to bench")
    check_int("prompt_tokens", prompt_tokens, 1)
    check_int("gen_tokens", gen_tokens, 2)
    check_int("runs", runs, 1)
    check_int("warmup", warmup, 0)
    check_int("batch_reps", batch_reps, 1)
    check_threads(threads)  # the runtimes' one check: refuses counts this machine cannot use, warns above its CPUs
    if context is not None:
        check_int("context", context, 2)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    profiles = [t if isinstance(t, TargetProfile) else resolve_target(t) for t in targets]
    checked = [preflight(a) for a in artifacts]
    if threads is None:
        threads = min(profiles[0].threads, usable_cpus()) if len(profiles) == 1 else usable_cpus()
    if host is None and calibrate_host:
        host = host_profile(progress=progress)
    settings = BenchSettings(prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, runs=runs, warmup=warmup,
                             threads=threads, context=context, timeout_s=float(timeout), batch_reps=batch_reps,
                             targets=[p.name for p in profiles])
    results = []
    for (art, shape), label in zip(checked, artifact_labels([art.path for art, _shape in checked])):
        results.append(bench_artifact(art, label, shape, settings, profiles, host, progress))
    return BenchReport(created_at=now_iso(), edgekit_version=__version__, host=host, targets=profiles,
                       settings=settings, results=results)


def bench_artifact(art: ResolvedArtifact, label: str, shape: ModelShape, s: BenchSettings,
               profiles: list[TargetProfile], host: TargetProfile | None, progress: Progress,
               run=run_once) -> ArtifactResult:
    """Bench one artifact; ``run(cmd, timeout)`` makes one run (run_once here; a device's runner over SSH)."""
    path = art.path
    cmd = worker_command(path, threads=s.threads, context=s.context, prompt_tokens=s.prompt_tokens,
                         gen_tokens=s.gen_tokens, batch_reps=s.batch_reps)
    records: list[RunRecord] = []
    total = s.warmup + s.runs
    with progress.step(f"bench {label}", total=total) as step:
        for i in range(total):
            warm = i < s.warmup
            step.update(f"bench {label}: {'warm-up' if warm else 'run'} {i + 1 if warm else i + 1 - s.warmup}/"
                        f"{s.warmup if warm else s.runs}")
            rec = _record(i, warm, *run(cmd, s.timeout_s), timeout=s.timeout_s)
            records.append(rec)
            step.advance()
            if rec.user_error:  # a bad artifact or settings: every further run would fail the same way
                break
    good = [r for r in records if r.ok and not r.warmup]
    failed = [r for r in records if not r.ok]
    kind = good[0].measurements["kind"] if good else shape.kind
    result = ArtifactResult(
        label=label, path=str(path), format=art.format, backend=shape.backend, kind=kind,
        precision=art.precision or shape.quant, size_bytes=shape.weight_bytes, gate=gate_summary(art.manifest, kind),
        shape=shape, threads=s.threads or 0,
        status="ok" if good and not failed else ("partial" if good else "failed"),
        error=failed[0].error if failed else None, runs=records,
    )
    if not good:
        return result
    rss = [r.peak_rss_bytes for r in good if r.peak_rss_bytes]
    result.peak_rss_bytes = spread(rss) if rss else None
    data = [r.measurements for r in good]
    if kind == "decoder":
        result.decoder = summarize_decoder(data)
    else:
        result.encoder = summarize_encoder(data)
    if host is not None:
        def one_thread_run() -> dict | None:  # the calibration's run when the bench uses more threads
            cmd1 = worker_command(path, threads=1, context=s.context, prompt_tokens=s.prompt_tokens,
                                  gen_tokens=s.gen_tokens, batch_reps=s.batch_reps)
            with progress.step(f"calibrate {label} on one thread", total=1) as step:
                rec = _record(total, True, *run(cmd1, s.timeout_s), timeout=s.timeout_s)
                step.advance()
            return rec.measurements if rec.ok else None

        result.calibration = _calibrate(result, shape, host, data, s, one_thread_run)
        if result.calibration is not None:
            save_calibration(result.calibration)
            result.predictions = [predict(shape, t, result.calibration, prompt_tokens=s.prompt_tokens,
                                          gen_tokens=s.gen_tokens, context=s.context) for t in profiles]
    if result.peak_rss_bytes is not None:
        peak = int(result.peak_rss_bytes.median)
        result.ram_checks = [RamCheck(target=t.name, ram_budget_bytes=int(t.app_ram_budget_gb.value * 1e9),
                                      peak_rss_bytes=peak, exceeds_budget=peak > t.app_ram_budget_gb.value * 1e9)
                             for t in profiles]
    return result


def _cpu_inputs(runs: list[dict]) -> dict | None:
    """Calibration timings from one-thread runs' CPU times (None when the runs did not record them).

    With one thread the runtimes compute on the calling thread, so its CPU time is what the run takes on a quiet
    host, however long a busy host kept it waiting. Other processes still share the caches and the memory, which
    only ever makes a sample slower: the lower quartile of the decode's forwards is kept, and the fastest prefill.
    """
    fwd = [x for d in runs for x in d.get("decode_forward_cpu_s") or ()]
    loop = [x for d in runs for x in d.get("token_loop_cpu_s") or ()]
    prefill = [d["prefill_cpu_s"] for d in runs if d.get("prefill_cpu_s")]
    if not fwd or not prefill:
        return None
    forward = float(np.percentile(fwd, 25))
    return {"forward_s": forward, "token_latency_s": forward + (float(np.median(loop)) if loop else 0.0),
            "prefill_s": min(prefill)}


def _calibrate(result: ArtifactResult, shape: ModelShape, host: TargetProfile, data: list[dict], s: BenchSettings,
               one_thread_run=None):
    """Calibrate on the CPU times of one-thread runs: the runs themselves when they used one thread, else one more
    run with one thread (``one_thread_run()``).

    Why one thread: its CPU time does not depend on what else the host runs (see ``_cpu_inputs``), whereas with
    more threads no timing can be trusted on a busy host: llama.cpp's and onnxruntime's threads spin at every
    barrier while a preempted sibling waits, and the spinning counts as CPU time too (on this project's 2-core
    host at a load of 7, a 2-thread SmolLM2 prefill took 10 s of wall clock and 2.3 s of CPU time per thread
    where a quiet one takes 0.33 s). And how well the host's own cores work together (its vCPU topology, its
    barrier latency) is the host's, not the runtime's: a one-thread calibration keeps it out of the targets'
    predictions, whose thread counts enter through their roofs. Without CPU times (a worker that does not record
    them, or a failed run) the quietest run's wall clock is used, as before.
    """
    threads = s.threads or host.threads
    quiet = min(data, key=lambda d: d.get("cpu_wait_fraction") if d.get("cpu_wait_fraction") is not None else 1.0)
    base = [d["base_rss_bytes"] for d in data if d.get("base_rss_bytes")]
    common = dict(artifact=result.label, measured_at=now_iso(),
                  peak_rss_bytes=int(result.peak_rss_bytes.median) if result.peak_rss_bytes else None,
                  base_rss_bytes=int(np.median(base)) if base else None)
    runs_1t = data if threads == 1 else None
    if threads > 1 and one_thread_run is not None:
        extra = one_thread_run()
        runs_1t = [extra] if extra else None
    if result.decoder is not None:
        d = result.decoder
        kv_positions = quiet.get("context_length", 0) if shape.backend == "llama.cpp" else d.prompt_tokens + d.generated_tokens
        decoder = dict(decode_position=d.prompt_tokens + d.generated_tokens // 2, prompt_tokens=d.prompt_tokens,
                       kv_positions=kv_positions)
        cpu = _cpu_inputs(runs_1t) if runs_1t else None
        if cpu is not None:
            return calibrate(shape, host, threads=1, timing="cpu", **cpu, **decoder, **common)
        return calibrate(shape, host, threads=threads, timing="wall", cpu_wait_fraction=quiet.get("cpu_wait_fraction"),
                         forward_s=float(np.median(quiet["decode_forward_s"])),
                         token_latency_s=float(np.median(quiet["token_latencies_s"])), prefill_s=quiet["prefill_s"],
                         **decoder, **common)
    if result.encoder is not None and "32" in quiet["batch_latencies_s"]:
        enc = dict(batch_tokens=result.encoder.prompt_tokens, **common)
        cpu32 = [x for r in runs_1t or () for x in (r.get("batch_cpu_s") or {}).get("32", ())]
        if cpu32:
            return calibrate(shape, host, threads=1, timing="cpu", batch32_s=float(np.percentile(cpu32, 25)), **enc)
        return calibrate(shape, host, threads=threads, timing="wall", cpu_wait_fraction=quiet.get("cpu_wait_fraction"),
                         batch32_s=float(np.median(quiet["batch_latencies_s"]["32"])), **enc)
    return None


def report_errors(report: BenchReport) -> tuple[int, str | None]:
    """(exit code, first error line) for the CLI: 2 when an input was wrong, 1 when runs failed, else 0."""
    user = [r for r in report.results for run in r.runs if run.user_error]
    if user:
        r = user[0]
        return 2, f"{r.label}: {r.error}"
    if report.failed:
        r = report.failed[0]
        where = f"{r.device} / {r.label}" if r.device else r.label
        if not r.runs:  # a device run that never started (unreachable, disk full)
            return 1, f"{where}: {r.error}"
        n_failed = sum(1 for x in r.runs if not x.ok)
        return 1, f"{where}: {n_failed} of {len(r.runs)} runs failed: {r.error}"
    return 0, None


__all__ = ["bench", "run_once", "worker_command", "report_errors", "preflight"]
