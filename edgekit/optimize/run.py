"""``optimize``: the best artifact of a model for a target under quality, size and speed constraints.

The run, in order:

1. check every input, resolve the source (its content digest keys the cache) and the target;
2. plan: the candidates (plan.py), each with a shape-based estimate; what the estimate rules out
   (RAM budget, size, the minimum decode speed when a calibration of the runtime exists) is pruned
   before anything is exported. ``dry_run`` stops here;
3. per format, from high to low bits (the file's effective bits, llama.cpp's fallback types included): a
   candidate whose format already saw a higher-bit candidate miss the quality floor by more than a margin
   (plan.TOP1_MARGIN, plan.KL_MARGIN) is pruned (quality taken as monotone in bits); the estimate is redone
   with the freshest calibration of its runtime; then the candidate is exported and gated once
   (cache.py: a second run, for any target, reuses it) and checked against the quality floor and
   the size limit; a survivor is measured on the host (cached per machine) or on the device, and
   predicted for the target from its own calibration;
4. the choice (decide.py: candidates within the speed measurements' noise of the best are tied, and the tie
   goes to the smaller, then the better gated), the Pareto front, and with ``out`` the chosen artifact and
   the report.

Nothing meeting the constraints raises :class:`~edgekit.errors.UnmetConstraintsError` with the
closest candidates; the whole table is on the error (``.result``) and nothing is written to ``out``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgekit import quants
from edgekit.errors import BackendError, ConfigError, UnmetConstraintsError, check_int
from edgekit.fileio import Terminated, terminate_cleanly
from edgekit.manifest import now_iso
from edgekit.names import BACKEND_OF_FORMAT
from edgekit.optimize import cache, decide, plan
from edgekit.optimize.schema import (
    OBJECTIVES, CandidateRecord, Constraints, Counters, OptimizeReport, Settings, Speeds,
)
from edgekit.optimize.view import CandidateView
from edgekit.profiler.roofline import Calibration, least_disturbed, load_calibration, predict
from edgekit.progress import Progress
from edgekit.quality import load_prompts, prompts_digest
from edgekit.targets.profile import TargetProfile
from edgekit.version import __version__


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns: the report, the choice and the candidates' table."""

    report: OptimizeReport
    artifact: Path | None = None  # the chosen artifact: OUT/artifact, or its folder in the cache without ``out``
    paths: dict[str, Path] = field(default_factory=dict)  # the report files written into ``out``

    @property
    def choice(self) -> CandidateRecord | None:
        return next((c for c in self.report.candidates if c.status == "chosen"), None)

    @property
    def candidates(self) -> list[CandidateRecord]:
        return self.report.candidates

    @property
    def pareto(self) -> list[CandidateRecord]:
        return [c for c in self.report.candidates if c.pareto]

    def table(self) -> list[dict[str, str]]:
        """One row per candidate (the report's table)."""
        from edgekit.optimize.report import candidate_rows

        return candidate_rows(self.report)

    def to_json(self) -> dict:
        return self.report.to_json()


def _number(name: str, value, *, low: float = 0.0, high: float | None = None) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > low
    if not ok or (high is not None and value > high):  # NaN and infinity too: inf would make the JSON report invalid
        bound = f" and at most {high:g}" if high is not None else ""
        raise ConfigError(f"{name} must be a finite number above {low:g}{bound}, got {value!r}", param=name)
    return float(value)


def _optional_count(name: str, value, minimum: int) -> int | None:
    return None if value is None else check_int(name, value, minimum)


class _Run:
    """The state of one optimize run."""

    def __init__(self, target: TargetProfile, cons: Constraints, facts: plan.SourceFacts, threads: int,
                 bench_opts: dict, device: str | None, view: CandidateView, device_opts: dict):
        self.target, self.cons, self.facts, self.threads = target, cons, facts, threads
        self.bench_opts, self.device, self.view, self.device_opts = bench_opts, device, view, device_opts
        self.budget = int(target.app_ram_budget_gb.value * 1e9)
        self.counters = Counters()
        self.cals: dict[str, Calibration] = {}  # the freshest calibration per runtime
        self.host_cals: dict[str, Calibration] = {}  # each host-benched candidate's own (label -> calibration)
        self.arts: dict[str, Path] = {}  # label -> artifact folder in the cache
        self.tie: tuple[float, list[str]] = (0.0, [])  # the tie band and the labels tied with the best

    # ---- estimates ---------------------------------------------------------------------
    def estimate(self, c: CandidateRecord) -> None:
        q = quants.export_quant(c.format, quants.get(c.quant).choice)
        c.plan = plan.estimate(self.facts, q, self.target, self.cals.get(BACKEND_OF_FORMAT[c.format]), self.threads,
                               self.bench_opts["prompt_tokens"], self.bench_opts["gen_tokens"])

    def prune(self, c: CandidateRecord, code: str, reason: str) -> None:
        c.status, c.reason_code, c.reason = "pruned", code, reason
        c.misses = [reason]
        self.view.update(c, c.reason)

    def reject(self, c: CandidateRecord, code: str, misses: list[str]) -> None:
        c.status, c.reason_code, c.misses = "rejected", code, misses
        c.reason = "; ".join(misses)
        self.view.update(c, c.reason)

    # ---- export + gate -----------------------------------------------------------------
    def export(self, c: CandidateRecord, source, prompts) -> cache.Entry | None:
        entry = cache.lookup(c.key)
        if entry is not None:
            c.cached = True
            self.counters.exports_reused += 1
            self.view.update(c, "export and gate: in the cache")
        else:
            self.view.update(c, "export and gate")
            try:
                entry = cache.export(c.key, source, c.format, quants.get(c.quant).choice, c.knobs, self.facts.digest,
                                     prompts, self.view.sub(c))
            except BackendError as exc:  # ExportError and the like; a user error (bad source) propagates
                c.status, c.reason_code, c.reason = "failed", "export_failed", f"export failed: {exc}"
                c.misses = [c.reason]
                self.view.update(c, c.reason)
                return None
            c.exported_now = True
            self.counters.exports += 1
        c.export_s, c.gate, c.size_bytes = entry.export_s, entry.gate, entry.size_bytes
        if entry.status == "passed":
            c.artifact = str(cache.artifact_path(c.key, c.format, c.quant))
            self.arts[c.label] = Path(c.artifact)
        return entry

    # ---- measurement and prediction ----------------------------------------------------
    def predict_target(self, c: CandidateRecord, cal: Calibration) -> None:
        from edgekit.profiler.shape import artifact_shape

        shape = artifact_shape(self.arts[c.label])
        p = predict(shape, self.target, cal, threads=self.threads, prompt_tokens=self.bench_opts["prompt_tokens"],
                    gen_tokens=self.bench_opts["gen_tokens"], context=self.facts.context)
        ttft = self.bench_opts["prompt_tokens"] / p.prefill_tps if p.prefill_tps else None
        c.predicted = Speeds(decode_tps=p.decode_tps, prefill_tps=p.prefill_tps, ttft_s=ttft,
                             memory_bytes=p.memory_bytes, fits=p.fits)
        c.predicted_from = p.calibrated_on

    def measure(self, c: CandidateRecord) -> bool:
        """Bench ``c`` on the host (cached) or the device; predict it for the target. False when the bench failed."""
        art = self.arts[c.label]
        if self.device is None:
            result = cache.bench_lookup(c.key, self.bench_opts)
            if result is not None:
                c.bench_cached = True
                self.counters.benches_reused += 1
            else:
                from edgekit.profiler.bench import bench as bench_here

                self.view.update(c, "bench on this machine")
                report = bench_here([art], progress=self.view.sub(c), **self.bench_opts)
                result = report.results[0]
                self.counters.benches += 1
                cache.bench_store(c.key, self.bench_opts, result)
        else:
            from edgekit.devices.bench import bench_devices

            self.view.update(c, f"bench on {self.device}")
            opts = {**self.bench_opts, "threads": self.threads}  # the device is the target: its threads
            report = bench_devices([art], [self.device], targets=[self.target], progress=self.view.sub(c), **opts,
                                   **self.device_opts)
            result = report.results[0]
            self.counters.benches += 1
        if result.decoder is None or result.status == "failed":
            c.status, c.reason_code = "failed", "bench_failed"
            c.reason = f"bench failed: {result.error or 'no decoder measurement'}"
            c.misses = [c.reason]
            self.view.update(c, c.reason)
            return False
        d = result.decoder
        rss = int(result.peak_rss_bytes.median) if result.peak_rss_bytes else None
        c.measured_on = self.device or "host"
        c.measured = Speeds(decode_tps=d.decode_tps.median, prefill_tps=d.prefill_tps.median, ttft_s=d.ttft_s.median,
                            memory_bytes=rss, fits=None if rss is None else rss <= self.budget)
        waits = [r.cpu_wait_fraction for r in result.runs if r.ok and not r.warmup and r.cpu_wait_fraction is not None]
        c.cpu_wait = round(float(sorted(waits)[len(waits) // 2]), 4) if waits else None
        c.spread = {k: round((s.max - s.min) / s.median, 4) for k, s in
                    (("decode_tps", d.decode_tps), ("prefill_tps", d.prefill_tps), ("ttft_s", d.ttft_s)) if s.median}
        if result.calibration is not None and self.device is None:
            self.host_cals[c.label] = result.calibration
        if result.calibration is not None:
            self.cals[result.calibration.backend] = result.calibration
            self.predict_target(c, result.calibration)
        elif result.predictions:
            p = result.predictions[0]
            c.predicted = Speeds(decode_tps=p.decode_tps, prefill_tps=p.prefill_tps, memory_bytes=p.memory_bytes,
                                 fits=p.fits)
            c.predicted_from = p.calibrated_on
        return True

    # ---- one candidate -----------------------------------------------------------------
    def evaluate(self, c: CandidateRecord, source, prompts, failed_floor: dict[str, CandidateRecord],
                 quality_prune: bool) -> None:
        higher = failed_floor.get(c.format)
        if quality_prune and higher is not None:
            self.prune(c, "quality_monotone", plan.monotone_reason(c, higher, plan.floor_text(self.cons)))
            return
        if BACKEND_OF_FORMAT[c.format] in self.cals:
            self.estimate(c)  # again, with the freshest calibration (a candidate of this run measured since the plan)
            pruned = plan.prune_by_prediction(c, self.cons, self.target)
            if pruned:
                self.counters.pruned_before_export += 1
                self.prune(c, *pruned)
                return
        entry = self.export(c, source, prompts)
        if entry is None:
            return
        missed_quality = decide.quality_misses(c, self.cons)
        gate_own = entry.gate is not None and entry.gate.precision == c.quant
        if missed_quality and gate_own and plan.clear_miss(c, self.cons):
            failed_floor.setdefault(c.format, c)
        if entry.status == "gate_failed":
            where = "" if gate_own else f" (its {entry.gate.precision} intermediate)"
            self.reject(c, "gate", [f"gate failed{where}: {'; '.join(entry.gate.failures)}", *missed_quality])
            return
        misses = missed_quality + decide.size_misses(c, self.cons)
        if misses:
            self.reject(c, "quality_floor" if missed_quality else "max_size", misses)
            return
        if not self.measure(c):
            return
        misses = decide.speed_misses(c, self.cons, self.target.name, self.budget, self.device)
        if misses:
            self.reject(c, "ram" if misses[0].startswith("memory") else "min_decode", misses)
            return
        c.status = "ok"
        self.view.update(c, "ok: meets every constraint")


def optimize(
    source: str | os.PathLike, target: str | TargetProfile, *, out: str | os.PathLike | None = None,
    device: str | None = None, min_top1: float | None = None, max_kl: float | None = None,
    max_size_mb: float | None = None, min_decode: float | None = None, objective: str = "decode",
    formats=None, quants=None, dry_run: bool = False, force: bool = False, prompts: str | os.PathLike | None = None,
    runs: int = 3, warmup: int = 1, prompt_tokens: int = 128, gen_tokens: int = 64, threads: int | None = None,
    host_threads: int | None = None, context: int | None = None, quality_prune: bool = True,
    accept_new_host_key: bool = False, progress: Progress | None = None,
) -> OptimizeResult:
    """Choose the best artifact of ``source`` for ``target`` under the constraints; return the choice and the table.

    Constraints: ``min_top1`` / ``max_kl`` (the gate's top-1 agreement and mean KL against the original model),
    ``max_size_mb`` (artifact MB, 1e6 bytes), ``min_decode`` (decode tokens/s on the target: predicted from this
    machine's calibration, or measured with ``device=``), and always the target's app RAM budget. ``objective``:
    decode | prefill (tokens/s, most) | ttft (seconds, least) | size (bytes, least); ties go to the smaller artifact.
    ``formats`` / ``quants``: restrict the candidates (see :func:`edgekit.optimize.plan.select`). ``threads``: on
    the target (default: its profile's); ``host_threads``: for the host runs (default: the target's, at most this
    machine's CPUs). ``runs``, ``warmup``, ``prompt_tokens``, ``gen_tokens``: the bench's. ``context``: the
    KV cache the memory check counts (default: the model's, at most 4096). ``quality_prune=False`` evaluates
    every candidate instead of pruning the lower bits of a format once one misses the quality floor.
    ``dry_run``: plan only (nothing exported). ``out``: write the chosen artifact to ``out/artifact`` and the report
    (optimize.json, .md, .png) beside it; ``force`` replaces an earlier optimize output there. ``device``: a
    registered device (``edgekit devices add``/``setup``), checked reachable before any export;
    ``accept_new_host_key`` trusts its SSH host key the first time.

    Returns an :class:`OptimizeResult`: ``.choice`` (the chosen :class:`CandidateRecord`: gate metrics, size,
    measured and predicted speeds), ``.artifact`` (its folder: ``out/artifact``, else in edgekit's cache),
    ``.table()`` (one row of strings per candidate, as in the report), ``.candidates``, ``.pareto``, ``.report``
    (the JSON report, :class:`OptimizeReport`) and ``.paths`` (the report files written). With ``dry_run`` there is
    no choice (``.choice`` is None) and every candidate is "planned" or "pruned".

    Raises :class:`~edgekit.errors.UnmetConstraintsError` when no candidate meets every constraint (``.details``:
    the closest candidates and what each misses; ``.result``: the whole table), and
    :class:`~edgekit.errors.ConfigError` (and the other user errors) for bad arguments, before any export.
    """
    t0 = time.perf_counter()
    from edgekit.optimize.report import check_apart, check_out
    from edgekit.sources import resolve_source
    from edgekit.targets.resolve import resolve_target

    cons = _constraints(min_top1, max_kl, max_size_mb, min_decode, objective)
    for name, value, minimum in (("runs", runs, 1), ("warmup", warmup, 0), ("prompt_tokens", prompt_tokens, 1),
                                 ("gen_tokens", gen_tokens, 2)):
        check_int(name, value, minimum)
    _optional_count("threads", threads, 1)
    _optional_count("host_threads", host_threads, 1)
    rows = plan.select(formats, quants)
    profile = target if isinstance(target, TargetProfile) else resolve_target(target)
    out_path = check_out(out, force) if out is not None and not dry_run else None
    prompt_list = load_prompts(prompts)
    if device is not None:
        _check_device(device, accept_new_host_key, connect=not dry_run)  # now, not after minutes of exports
    view = progress if isinstance(progress, CandidateView) else CandidateView(progress)
    with view.step(f"source: {plan.source_label(source)} (content digest)"):
        src = resolve_source(source)
        facts = plan.source_facts(src, context)
    if out_path is not None:
        check_apart(out_path, src.path)
    n_threads = min(threads or profile.threads, profile.threads)
    from edgekit.runtimes.threads import available_cpus

    bench_opts = dict(runs=runs, warmup=warmup, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                      threads=host_threads or min(n_threads, available_cpus()))
    run = _Run(profile, cons, facts, n_threads, bench_opts, device, view,
               {"accept_new_host_key": accept_new_host_key} if device else {})
    run.cals = _calibrations({q.format for q in rows}, view)
    digest = prompts_digest(prompt_list)
    cands = _plan_candidates(run, rows, digest)
    settings = Settings(formats=list(dict.fromkeys(q.format for q in rows)), quants=[q.name for q in rows],
                        runs=runs, warmup=warmup, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                        host_threads=bench_opts["threads"], context=facts.context, quality_prune=quality_prune,
                        prompts_sha256=digest)
    report = OptimizeReport(created_at=now_iso(), edgekit_version=__version__, source=str(source),
                            source_sha256=facts.digest, target=profile.name, target_threads=n_threads,
                            ram_budget_bytes=run.budget, device=device, constraints=cons, settings=settings,
                            dry_run=dry_run, candidates=cands, counters=run.counters)
    if not dry_run:
        _evaluate(run, cands, source, prompts, quality_prune)
    report.wall_s = round(time.perf_counter() - t0, 2)
    if dry_run:
        return OptimizeResult(report)
    return _result(run, report, cands, out_path, force)


def _constraints(min_top1, max_kl, max_size_mb, min_decode, objective: str) -> Constraints:
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective={objective!r}: use one of {', '.join(OBJECTIVES)}", param="objective")
    return Constraints(min_top1=_number("min_top1", min_top1, high=1.0), max_kl=_number("max_kl", max_kl),
                       max_size_mb=_number("max_size_mb", max_size_mb), min_decode=_number("min_decode", min_decode),
                       objective=objective)


def _plan_candidates(run: _Run, rows, digest: str) -> list[CandidateRecord]:
    """One record per quant row, with its cache key and predicted speeds; those the prediction already rules
    out are pruned before any export."""
    code, opts = plan.export_code_digest(), run.bench_opts
    cands = []
    for q in rows:
        c = CandidateRecord(label=f"{q.format}-{q.name}", format=q.format, quant=q.name, bpw=q.bpw, knobs={},
                            threads=run.threads, key=plan.cache_key(run.facts, q, {}, digest, code),
                            plan=plan.estimate(run.facts, q, run.target, run.cals.get(BACKEND_OF_FORMAT[q.format]),
                                               run.threads, opts["prompt_tokens"], opts["gen_tokens"]))
        c.bpw = plan.file_bpw(c, run.facts)
        c.cached = cache.lookup(c.key) is not None
        pruned = plan.prune_by_prediction(c, run.cons, run.target)
        if pruned:
            c.status, c.reason_code, c.reason, c.misses = "pruned", pruned[0], pruned[1], [pruned[1]]
            run.counters.pruned_before_export += 1
        cands.append(c)
    run.counters.candidates = len(cands)
    order = {f: i for i, f in enumerate(dict.fromkeys(c.format for c in cands))}
    return sorted(cands, key=lambda c: (order[c.format], -c.bpw))  # per format, the file's bits from high to low


def _evaluate(run: _Run, cands: list[CandidateRecord], source, prompts, quality_prune: bool) -> None:
    """Export, gate and bench every planned candidate (cached ones are reused), then choose; Ctrl-C keeps
    what was exported."""
    view = run.view
    view.plan(cands)
    failed_floor: dict[str, CandidateRecord] = {}
    with terminate_cleanly():  # SIGTERM and SIGHUP unwind as Ctrl-C does: a bench run under way is killed too
        try:
            for c in cands:
                if c.status == "planned":
                    run.evaluate(c, source, prompts, failed_floor, quality_prune)
            run.tie = _finish(run, cands, run.cons, run.device)
            for c in cands:
                if c.status == "chosen":
                    view.update(c, "chosen")
        except (KeyboardInterrupt, Terminated):
            view.close()
            done = sum(1 for c in cands if c.exported_now)
            view.log(f"interrupted: {done} candidate{'s' if done != 1 else ''} exported in this run "
                     f"{'stay' if done != 1 else 'stays'} in the cache; the next run starts from them")
            raise
        finally:
            view.close()


def _result(run: _Run, report: OptimizeReport, cands: list[CandidateRecord], out_path: Path | None,
            force: bool) -> OptimizeResult:
    """The result of a finished run, its outputs written; UnmetConstraintsError when nothing was chosen."""
    from edgekit.optimize.report import write_outputs

    report.choice = next((c.label for c in cands if c.status == "chosen"), None)
    if report.choice is not None:
        report.tie_band, report.tied = run.tie
    report.pareto = [c.label for c in cands if c.pareto]
    result = OptimizeResult(report)
    if report.choice is None:
        raise UnmetConstraintsError(
            f"no candidate meets the constraints ({_constraints_text(run.cons, run.target.name)}): relax one of them "
            "or widen the candidates", details=decide.closest_lines(cands, run.cons, run.budget, run.device is not None),
            result=result,
            param=("min_top1", "max_kl", "max_size_mb", "min_decode"))
    chosen = report.candidate(report.choice)
    result.artifact = Path(chosen.artifact)
    if out_path is not None:
        result.artifact, result.paths = write_outputs(report, out_path, Path(chosen.artifact), force)
    return result


def _check_device(name: str, accept_new_host_key: bool, connect: bool) -> None:
    """Device ``name`` is registered and set up, and (``connect``) answers with a trusted host key."""
    from edgekit.devices.registry import get_device
    from edgekit.devices.ssh import connect as ssh_connect

    dev = get_device(name)
    if dev.python is None:
        raise ConfigError(f"device {name} is not set up: run 'edgekit devices setup {name}'", param="device")
    if connect:
        ssh_connect(dev, accept_new_host_key=accept_new_host_key).close()


def _calibrations(formats: set[str], view: CandidateView) -> dict[str, Calibration]:
    """The calibration of each runtime this machine already holds; for llama.cpp without one, a short run of the
    packaged SmolLM2 GGUF (as edgekit predict does), when it is installed."""
    cals = {}
    for fmt in formats:
        backend = BACKEND_OF_FORMAT[fmt]
        cal = load_calibration(backend)
        if cal is None and backend == "llama.cpp":
            from edgekit.errors import EdgekitError
            from edgekit.profiler.api import quick_calibration

            try:
                from edgekit.packaged import smollm2_gguf_path

                cal = quick_calibration(smollm2_gguf_path(), None, view)
            except EdgekitError:
                cal = None
        if cal is not None:
            cals[backend] = cal
    return cals


def _finish(run: _Run, cands: list[CandidateRecord], cons: Constraints, device: str | None
            ) -> tuple[float, list[str]]:
    """Predictions for exported candidates never benched, objective values, the choice and the Pareto front;
    returns the tie band and the labels tied with the best."""
    if device is None:
        _predict_pooled(run, cands, cons)
    for c in cands:
        if c.artifact and c.predicted is None and BACKEND_OF_FORMAT[c.format] in run.cals:
            run.predict_target(c, run.cals[BACKEND_OF_FORMAT[c.format]])
        c.objective_value = decide.objective_value(c, cons.objective, device is not None)
    band = decide.tie_band(cands, cons.objective)
    chosen, tied = decide.choose(cands, cons.objective, band)
    if chosen is not None:
        chosen.status = "chosen"
    decide.pareto(cands, cons, device is not None)
    return band, [c.label for c in tied]


def _predict_pooled(run: _Run, cands: list[CandidateRecord], cons: Constraints) -> None:
    """Predict every host-benched candidate from one calibration per runtime and kernel kind: the least disturbed
    that this run measured.

    A calibration describes a runtime's kernels on this host, not one artifact (the roofline rates a kernel kind,
    ``shape.compute_kind``); each bench's own calibration carries the load the host had while it ran. On a busy
    2-core host the same q8_0 and q6_k GGUFs of SmolLM2 were predicted for the Raspberry Pi 5 at 38.1 / 35.5
    tok/s in one run and 35.1 / 38.4 in the next: more than the tie band, so the choice moved. From one
    calibration, candidates of one runtime differ by their shapes alone (bytes and arithmetic per token), which no
    load reorders. Speed constraints are checked again on the new predictions."""
    from edgekit.profiler.shape import compute_kind

    def group(c: CandidateRecord) -> tuple[str, str]:
        return BACKEND_OF_FORMAT[c.format], compute_kind(c.quant)

    judged = [c for c in cands if c.label in run.host_cals
              and (c.status == "ok" or c.reason_code in ("ram", "min_decode"))]
    pools: dict[tuple[str, str], list[Calibration]] = {}
    for c in judged:
        pools.setdefault(group(c), []).append(run.host_cals[c.label])
    for c in judged:
        run.predict_target(c, least_disturbed(pools[group(c)]))
        misses = decide.speed_misses(c, cons, run.target.name, run.budget, None)
        if misses:
            run.reject(c, "ram" if misses[0].startswith("memory") else "min_decode", misses)
        elif c.status != "ok":
            c.status, c.reason_code, c.reason, c.misses = "ok", None, None, []
            run.view.update(c, "ok: meets every constraint")


def _constraints_text(cons: Constraints, target: str) -> str:
    parts = [f"{name}={getattr(cons, name):g}" for name in ("min_top1", "max_kl", "max_size_mb", "min_decode")
             if getattr(cons, name) is not None]
    return ", ".join(parts + [f"the RAM budget of {target}"])
