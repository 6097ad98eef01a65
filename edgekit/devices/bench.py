"""``bench(..., device=...)``: the same bench runs on devices over SSH, several devices in parallel.

Per device, one thread and one SSH connection: check the setup (a cache hit
when the device holds this edgekit build), push each artifact once
(push.py), then the runs one after another, each the same fresh-process worker
as a local bench started by the agent on the device (agent.py) with the device's
Python; its JSON comes back and goes through the same summaries
(``profiler.bench.bench_artifact`` with a remote runner), so a device result has
the local schema plus the device's name. A device that is unreachable, drops,
runs out of memory or times out is reported as such for the artifact concerned;
the other devices finish. An SSH host key that is unknown or changed stops the
whole bench before anything runs (HostKeyError).

Each device result also carries edgekit's prediction for that device and its
error: the roofline calibrated here on the same artifact (one short local run),
applied to the device's detected profile (``targets detect --device``) or else to
the first ``targets`` preset.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from edgekit.artifact import ResolvedArtifact
from edgekit.devices import remote
from edgekit.devices.push import is_disk_full, push_artifact
from edgekit.devices.registry import Device, get_device
from edgekit.devices.setup import install
from edgekit.devices.ssh import Connection, connect
from edgekit.errors import ConfigError, DeviceError, EdgekitError, check_int
from edgekit.manifest import now_iso
from edgekit.profiler.bench import bench_artifact, artifact_labels, gate_summary, preflight
from edgekit.profiler.bench import bench as local_bench
from edgekit.profiler.roofline import Calibration, predict
from edgekit.profiler.schema import ArtifactResult, BenchReport, BenchSettings, DeviceSummary, PredictionCheck
from edgekit.profiler.shape import ModelShape
from edgekit.progress import Progress, Step, ensure
from edgekit.targets.profile import TargetProfile, load_profile_file
from edgekit.targets.resolve import resolve_target
from edgekit.version import __version__

QUICK = {"prompt_tokens": 64, "gen_tokens": 32, "runs": 1, "warmup": 0}  # the host calibration run (as predict's)
AGENT_MARGIN_S = 120.0  # beyond the run's own timeout: start-up of the agent, a slow device
FAILURE_TYPE = {"out_of_memory": "OutOfMemory", "connection_lost": "DeviceConnectionLost", "timeout": "BenchRunError",
                "crashed": "BenchRunError", "error": "BenchRunError"}


class _DeviceProgress(Progress):
    """Progress of one of several devices at once: prefixed log lines (bars of parallel threads would collide)."""

    def __init__(self, parent: Progress, name: str, lock: threading.Lock):
        self.parent, self.name, self.lock = parent, name, lock

    def log(self, message: str) -> None:
        with self.lock:
            self.parent.log(f"{self.name}: {message}")

    def step(self, description: str, total: int | None = None):
        import contextlib

        log = self.log

        class _Step(Step):
            def update(self, text: str) -> None:
                log(text)

        @contextlib.contextmanager
        def cm():
            yield _Step()

        return cm()


def device_profile(device: Device, presets: list[TargetProfile]) -> tuple[TargetProfile | None, str]:
    """The profile to predict ``device`` with: its detected one, else the first preset given."""
    if device.profile and os.path.isfile(device.profile):
        return load_profile_file(device.profile), "detected on the device"
    if presets:
        return presets[0], "preset"
    return None, ""


def _pct(pred: float | None, meas: float | None) -> float | None:
    return None if not pred or not meas else round((pred / meas - 1.0) * 100.0, 1)


def prediction_check(result: ArtifactResult, profile: TargetProfile, source: str, cal: Calibration) -> PredictionCheck:
    p = result.predictions[0]
    c = PredictionCheck(target=profile.name, profile_source=source, calibrated_on=p.calibrated_on)
    if result.decoder is not None:
        c.decode_tps_predicted, c.decode_tps_measured = p.decode_tps, result.decoder.decode_tps.median
        c.prefill_tps_predicted, c.prefill_tps_measured = p.prefill_tps, result.decoder.prefill_tps.median
        c.decode_error_pct = _pct(c.decode_tps_predicted, c.decode_tps_measured)
        c.prefill_error_pct = _pct(c.prefill_tps_predicted, c.prefill_tps_measured)
    elif result.encoder is not None and "32" in result.encoder.batches:
        c.items_per_s_predicted, c.items_per_s_measured = p.encoder_items_per_s, result.encoder.batches["32"].items_per_s
        c.items_error_pct = _pct(c.items_per_s_predicted, c.items_per_s_measured)
    return c


def _failed(art: ResolvedArtifact, label: str, shape: ModelShape, device: str, failure: str, message: str,
            threads: int) -> ArtifactResult:
    return ArtifactResult(device=device, failure=failure, label=label, path=str(art.path), format=art.format,
                          backend=shape.backend, kind=shape.kind, precision=art.precision or shape.quant,
                          size_bytes=shape.weight_bytes, gate=gate_summary(art.manifest, shape.kind), shape=shape,
                          threads=threads, status="failed", error=message, runs=[])


def _runner(conn: Connection, remote_path: str, s: BenchSettings, failures: list[tuple[str | None, str]]):
    """``run(cmd, timeout)`` for ``bench_artifact``: one run through the agent; the local command is not used."""
    device = conn.device

    def run(_cmd, timeout: float):
        t0 = time.perf_counter()
        req = dict(artifact=remote_path, threads=s.threads, context=s.context, prompt_tokens=s.prompt_tokens,
                   gen_tokens=s.gen_tokens, batch_reps=s.batch_reps, run_timeout_s=timeout,
                   memory_limit_mb=device.memory_limit_mb)
        try:
            out = remote.agent(conn, "run", timeout=timeout + AGENT_MARGIN_S, **req)
        except DeviceError as exc:
            hung = "no answer within" in str(exc)
            if hung:
                conn.lost = True  # the command may still run there: the next run reconnects
            failures.append(("timeout" if hung else ("connection_lost" if conn.lost else "error"), str(exc)))
            return {}, None, hung, None, time.perf_counter() - t0, str(exc)
        failures.append((out.get("failure"), (out.get("stderr") or "").split("\n", 1)[0]))
        return out["data"], out["code"], out["timed_out"], out["rss"], out["wall"], out["stderr"]

    return run


def _explain(result: ArtifactResult, failures: list[tuple[str | None, str]], device: Device) -> None:
    """Name why runs failed on the device (out of memory, connection lost ...) in the records and the result."""
    for rec, (failure, note) in zip(result.runs, failures):
        if rec.ok or failure is None:
            continue
        if failure == "out_of_memory":
            limit = f" (memory limit {device.memory_limit_mb} MB)" if device.memory_limit_mb else ""
            why = note if note.startswith("killed (signal 9)") else rec.error
            rec.error = f"out of memory on {device.name}{limit}: {why}"
        elif failure == "connection_lost":
            rec.error = f"connection to {device.name} lost during the run ({note.split(': ', 1)[-1]})"
        rec.error_type = FAILURE_TYPE.get(failure, rec.error_type)
    kinds = [f for rec, (f, _n) in zip(result.runs, failures) if f and not rec.ok]
    if kinds:
        result.failure = kinds[0]
        result.error = next(rec.error for rec in result.runs if not rec.ok)


def _bench_device(device: Device, conn: Connection | None, connect_error: str | None, checked, labels,
                  settings: BenchSettings, presets: list[TargetProfile], cals: dict[str, Calibration],
                  progress: Progress) -> tuple[list[ArtifactResult], DeviceSummary]:
    summary = DeviceSummary(name=device.name, address=device.address, status="ok")
    results: list[ArtifactResult] = []
    profile, source = device_profile(device, presets)
    threads = settings.threads or (profile.threads if profile else 0)
    if conn is None:
        summary.status, summary.error = "unreachable", connect_error
        return [_failed(a, lb, sh, device.name, "unreachable", connect_error or "unreachable", threads)
                for (a, sh), lb in zip(checked, labels)], summary
    try:
        summary.facts = remote.probe(conn, "facts", dir=device.remote_dir)
        threads = threads or summary.facts.get("usable_cores") or 1
        s = settings.model_copy(update={"threads": threads})
        if device.python is None:
            raise ConfigError(f"device {device.name} is not set up: run 'edgekit devices setup {device.name}'",
                              param="device")
        setup = install(conn, python=device.python if device.pythonpath else None, progress=progress)
        summary.setup_cached = setup["cached"]
        for (art, shape), label in zip(checked, labels):
            if conn.lost:  # the previous artifact lost the connection: one new try
                try:
                    conn.close()
                    conn = connect(conn.device, retries=1)
                except DeviceError as exc:
                    results.append(_failed(art, label, shape, device.name, "connection_lost", str(exc), threads))
                    continue
            try:
                with progress.step(f"push {label} to {device.name}"):
                    pushed = push_artifact(conn, art)
            except DeviceError as exc:
                failure = "disk_full" if is_disk_full(exc) else "connection_lost" if conn.lost else "error"
                results.append(_failed(art, label, shape, device.name, failure, str(exc), threads))
                continue
            summary.pushes += 1
            summary.pushes_skipped += int(pushed.skipped)
            failures: list[tuple[str | None, str]] = []
            res = bench_artifact(art, label, shape, s, [profile] if profile else [], None, progress,
                             run=_runner(conn, pushed.remote_path, s, failures))
            res.device = device.name
            _explain(res, failures, device)
            cal = cals.get(label)
            if profile is not None and cal is not None and res.status != "failed":
                res.predictions = [predict(shape, profile, cal, threads=threads, prompt_tokens=s.prompt_tokens,
                                           gen_tokens=s.gen_tokens, context=s.context)]
                res.check = prediction_check(res, profile, source, cal)
            results.append(res)
    except DeviceError as exc:
        summary.status, summary.error = "failed", str(exc)
        done = {r.label for r in results}
        results += [_failed(a, lb, sh, device.name, "connection_lost" if conn.lost else "error", str(exc), threads)
                    for (a, sh), lb in zip(checked, labels) if lb not in done]
    finally:
        summary.bytes_sent = conn.bytes_sent
        conn.close()
    if results and all(r.status == "failed" for r in results) and summary.status == "ok":
        summary.status = "failed"
        summary.error = results[0].error
    return results, summary


def _connect_all(devices: list[Device], accept_new_host_key: bool) -> dict[str, Connection | Exception]:
    def one(d: Device):
        try:
            return connect(d, accept_new_host_key=accept_new_host_key)
        except EdgekitError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        out = dict(zip([d.name for d in devices], pool.map(one, devices)))
    user_errors = [e for e in out.values() if isinstance(e, EdgekitError) and not isinstance(e, DeviceError)]
    if user_errors:  # an unknown/changed host key or refused keys: stop before anything runs anywhere
        for c in out.values():
            if isinstance(c, Connection):
                c.close()
        raise user_errors[0]
    return out


def bench_devices(
    artifacts: Sequence[str | os.PathLike], devices: Sequence[str], *, targets: Sequence[str | TargetProfile] = (),
    prompt_tokens: int = 128, gen_tokens: int = 128, runs: int = 5, warmup: int = 1, threads: int | None = None,
    context: int | None = None, timeout: float = 600.0, batch_reps: int = 5, accept_new_host_key: bool = False,
    host: TargetProfile | None = None, calibrate_host: bool = True, progress: Progress | None = None,
) -> BenchReport:
    """Bench ``artifacts`` on each registered device in ``devices`` (in parallel); one merged report."""
    progress = ensure(progress)
    if not artifacts:
        raise ConfigError("pass at least one artifact to bench")
    for name, value, minimum in (("prompt_tokens", prompt_tokens, 1), ("gen_tokens", gen_tokens, 2), ("runs", runs, 1),
                                 ("warmup", warmup, 0), ("batch_reps", batch_reps, 1)):
        check_int(name, value, minimum)
    if threads is not None:
        check_int("threads", threads, 1)
    if context is not None:
        check_int("context", context, 2)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}", param="timeout")
    if isinstance(devices, str):
        devices = [devices]
    records = [get_device(n) for n in dict.fromkeys(devices)]
    presets = [t if isinstance(t, TargetProfile) else resolve_target(t) for t in targets]
    checked = [preflight(a) for a in artifacts]
    labels = artifact_labels([art.path for art, _shape in checked])
    conns = _connect_all(records, accept_new_host_key)
    profiles = {d.name: device_profile(d, presets)[0] for d in records}
    cals: dict[str, Calibration] = {}
    if calibrate_host and any(profiles.values()):
        for (art, _shape), label in zip(checked, labels):
            rep = local_bench([art.path], host=host, progress=progress, **QUICK)
            host = rep.host
            if rep.results[0].calibration is not None:
                cals[label] = rep.results[0].calibration
    settings = BenchSettings(prompt_tokens=prompt_tokens, gen_tokens=gen_tokens, runs=runs, warmup=warmup,
                             threads=threads, context=context, timeout_s=float(timeout), batch_reps=batch_reps,
                             targets=[p.name for p in presets])
    lock = threading.Lock()

    def one(d: Device):
        c = conns[d.name]
        prog = progress if len(records) == 1 else _DeviceProgress(progress, d.name, lock)
        return _bench_device(d, c if isinstance(c, Connection) else None, None if isinstance(c, Connection) else str(c),
                             checked, labels, settings, presets, cals, prog)

    with ThreadPoolExecutor(max_workers=len(records)) as pool:
        outcomes = list(pool.map(one, records))
    used = {p.name: p for p in [*presets, *(p for p in profiles.values() if p is not None)]}
    return BenchReport(created_at=now_iso(), edgekit_version=__version__, host=host, targets=list(used.values()),
                       settings=settings, results=[r for rs, _s in outcomes for r in rs],
                       devices=[s for _r, s in outcomes])


def detect_device(name: str, *, save: str | os.PathLike | None = None, force: bool = False,
                  accept_new_host_key: bool = False) -> tuple[TargetProfile, str]:
    """Measure device ``name`` (targets.detect.detect, run there) into a target profile named after it.

    The profile is written to ``save`` (default: ``devices/NAME.toml`` in the config folder) and becomes the
    device's profile for predictions; returns (profile, path written).
    """
    from edgekit.devices.registry import profile_path, update_device
    from edgekit.targets.profile import check_profile_path, parse_profile, save_profile

    device = get_device(name)
    if device.python is None:
        raise ConfigError(f"device {name} is not set up: run 'edgekit devices setup {name}'", param="device")
    path = profile_path(name) if save is None else check_profile_path(save, force)
    with connect(device, accept_new_host_key=accept_new_host_key) as conn:
        install(conn, python=device.python if device.pythonpath else None)
        data = remote.agent(conn, "detect", timeout=600, name=name)["profile"]
    profile = parse_profile(data, f"profile measured on device {name}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    written = save_profile(profile, path, force=True if save is None else force)
    update_device(get_device(name).model_copy(update={"profile": str(written)}))
    return profile, str(written)
