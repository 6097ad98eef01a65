"""Predict tokens/s and memory on a target from the model's shape, the target's profile and a host calibration.

A decoded token streams the weights (``ModelShape.decode_bytes``) through the memory
system and does their arithmetic. Streaming takes bytes / bandwidth; the arithmetic
takes flops / (the kernels' rate x the runtime's efficiency). How much of the one
hides under the other is a property of the target's cores and memory system
(``TargetProfile.overlap``): out-of-order x86 cores with deep prefetchers hide the
arithmetic (the classic roofline: the larger of the two), the Raspberry Pi's
Cortex-A7x cores do not (the two add up; see the Pi presets for the evidence).
Real runtimes add work neither accounts for: dispatch and synchronisation of every
layer inside the forward pass, and the per-token loop around it (sampling, the
confidence softmax, detokenization). The calibration measures these on the host
with the same runtime against the microbenchmarked host profile:

* ``prefill_efficiency``: prefill is compute-bound; the achieved fraction of the
  host's rate for the model's kernels (``kernel_gops``). The decode's arithmetic
  runs through the same kernels at the same efficiency (``compute_efficiency``),
  raised to what the decode itself shows when that is more.
* ``forward_s`` (model time per decoded token) against the host's roof: the
  difference is charged per layer (``layer_overhead_s``). A forward faster than
  the roof (a small model partly held in the host's caches) gives a
  ``roof_efficiency`` above 1 that only predictions for the host itself use: caches
  do not travel to a target.
* ``token_overhead_s``: the loop's own time per token.
* memory: the interpreter and libraries (``base_rss_bytes``), the weights, the
  KV cache, and what the runtime adds on top: for llama.cpp a fixed compute
  buffer, for onnxruntime a multiple of the weights (pre-packed copies).

Host-independence is by construction where the numbers allow it: the efficiency is
measured against the same kind of rate a target is predicted with (for llama.cpp's
quantized kernels the fp32 FMA rate at the 256-bit width they are written for, not
an AVX-512 or VNNI peak they cannot use), and the overheads scale with the speed of
one core at that width (host / target), never with a vector width scalar code does
not use. The overheads stay constant across thread counts; the roofs use the
target's bandwidth and rates at its thread count. The timings behind a
calibration are CPU times of a one-thread run where the host was busy
(bench.py): a run waiting for a CPU does not make the host look slower.
Predictions are for edgekit's runtimes on the target; benchmarks/predict_accuracy.py
compares them with published llama.cpp measurements.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgekit.errors import ConfigError
from edgekit.fileio import cache_dir, read_json, write_json_atomic
from edgekit.names import Backend, Kind
from edgekit.profiler.shape import ModelShape
from edgekit.strict import StrictModel, load_versioned
from edgekit.targets.profile import TargetProfile

CALIBRATION_VERSION = 1

# Cores without int8 dot-product instructions (ARMv8.0 NEON: no SDOT) run llama.cpp's quantized kernels this many
# times slower than their fp32 FMA rate suggests. ggml emulates each SDOT (16 int8 multiply-adds) with two SMULL,
# two SADDLP and two ADD (ggml_vdotq_s32 without __ARM_FEATURE_DOTPROD), and on a Cortex-A72 the SMULLs issue on one
# of its two NEON pipes only: a q8_0 block of 32 weights takes about 9 NEON cycles instead of 3.5 (the block's loads,
# scale conversion and FMA included). The published TinyLlama q8_0 prefill of the same llama.cpp build agrees: the
# Raspberry Pi 4 reaches 2.7 operations per cycle per core where the Pi 5 (with SDOT) reaches 7.1, a ratio of 2.6
# (justine.lol/matmul).
INT8_EMULATION = 2.5


def kernel_gops(profile: TargetProfile, kind: str, threads: int | None = None) -> float:
    """The rate ``kind``'s kernels are measured against on ``profile`` (GOP/s; see ``shape.compute_kind``)."""
    if kind == "quant":
        rate = profile.simd256_gflops(threads)
        if profile.arch == "arm64" and "dotprod" not in profile.isa:
            rate /= INT8_EMULATION
        return rate
    return profile.peak_gops(kind, threads)


def host_label(profile: TargetProfile) -> str:
    return f"{profile.name} ({profile.soc or profile.arch})"


class Calibration(StrictModel):
    """How one runtime performed on the host, relative to the host's roofs."""

    schema_version: int = CALIBRATION_VERSION
    backend: Backend
    kind: Kind = "decoder"
    artifact: str
    host: str = Field(description="host name and chip")
    measured_at: str
    threads: int
    timing: Literal["wall", "cpu"] | None = Field(
        None, description="wall: clock time of runs on a quiet host; cpu: CPU time of a one-thread run (busy host)")
    cpu_wait_fraction: float | None = Field(None, description="of the run calibrated on: high means a busy host")
    compute: Literal["fp32", "int8", "quant"]
    host_bandwidth_gbs: float
    host_peak_gops: float = Field(description="the host's rate for the model's kernels at the calibrated threads")
    host_core_gflops: float
    host_overlap: float = Field(1.0, description="the host's memory_compute_overlap")
    decode_position: int = 0
    forward_s: float = 0.0
    roof_s: float = 0.0
    roof_efficiency: float = Field(1.0, description="above 1: the host's caches beat its copy bandwidth (host only)")
    layer_overhead_s: float = 0.0
    token_overhead_s: float = 0.0
    prefill_efficiency: float = 0.0
    compute_efficiency: float = Field(0.0, description="decode's arithmetic: the prefill's, or more if decode shows it")
    encoder_efficiency: float = 0.0
    base_rss_bytes: int = 0
    runtime_extra_bytes: int = Field(0, description="llama.cpp: fixed bytes beyond weights and KV")
    runtime_extra_ratio: float = Field(0.0, description="onnx: extra bytes per weight byte")


class Prediction(StrictModel):
    target: str
    threads: int
    backend: str
    calibrated_on: str
    bound: Literal["memory", "compute"]
    decode_tps: float | None = None
    decode_tps_at_context: float | None = None
    prefill_tps: float | None = None
    encoder_items_per_s: float | None = Field(None, description="batch-32 throughput (encoders)")
    bytes_per_token: int
    flops_per_token: int
    context: int
    weights_bytes: int
    kv_bytes: int
    runtime_bytes: int
    memory_bytes: int
    ram_budget_bytes: int
    fits: bool
    prediction_only_target: bool = False


def combine(t_mem: float, t_cmp: float, overlap: float) -> float:
    """Seconds of a token that streams for ``t_mem`` and computes for ``t_cmp``, ``overlap`` of the shorter hidden."""
    return max(t_mem, t_cmp) + (1.0 - overlap) * min(t_mem, t_cmp)


def roof_parts(shape: ModelShape, profile: TargetProfile, threads: int, position: int, efficiency: float
               ) -> tuple[float, float]:
    """(streaming seconds, arithmetic seconds) of one decoded token at ``position``."""
    t_mem = shape.decode_bytes(position) / (profile.bandwidth_gbs(threads) * 1e9)
    t_cmp = 0.0
    if efficiency > 0:
        t_cmp = shape.decode_flops(position) / (kernel_gops(profile, shape.compute, threads) * 1e9 * efficiency)
    return t_mem, t_cmp


def is_calibration_host(profile: TargetProfile, cal: Calibration) -> bool:
    """Whether ``profile`` is the measured host ``cal`` was made on (its caches apply)."""
    return (profile.measured_at is not None and host_label(profile) == cal.host
            and abs(profile.bandwidth_gbs(cal.threads) - cal.host_bandwidth_gbs) <= 1e-9 * cal.host_bandwidth_gbs)


def _roof(shape: ModelShape, profile: TargetProfile, threads: int, position: int, cal: Calibration) -> tuple[float, str]:
    """Seconds per decoded token at ``position`` by the roofs, and which one is the larger."""
    t_mem, t_cmp = roof_parts(shape, profile, threads, position, cal.compute_efficiency)
    t = combine(t_mem, t_cmp, profile.overlap)
    if is_calibration_host(profile, cal):
        t /= cal.roof_efficiency
    return t, "memory" if t_mem >= t_cmp else "compute"


def least_disturbed(cals: list[Calibration]) -> Calibration:
    """Of calibrations of one runtime's kernels on this host, the one the rest of the host slowed least: the
    highest kernel efficiency, then the least overhead per token (other processes only ever make a sample
    slower)."""
    return max(cals, key=lambda k: (k.compute_efficiency, -k.token_overhead_s, -k.layer_overhead_s))


def calibrate(
    shape: ModelShape, host: TargetProfile, *, threads: int, artifact: str, measured_at: str,
    forward_s: float | None = None, token_latency_s: float | None = None, decode_position: int = 0,
    prefill_s: float | None = None, prompt_tokens: int = 0, batch32_s: float | None = None, batch_tokens: int = 0,
    peak_rss_bytes: int | None = None, base_rss_bytes: int | None = None, kv_positions: int = 0,
    cpu_wait_fraction: float | None = None, timing: Literal["wall", "cpu"] = "wall",
) -> Calibration:
    """A :class:`Calibration` from one artifact's host measurements (medians over runs, or CPU times)."""
    cal = Calibration(
        backend=shape.backend, kind=shape.kind, artifact=artifact, host=host_label(host), measured_at=measured_at,
        threads=threads, timing=timing, compute=shape.compute, host_bandwidth_gbs=host.bandwidth_gbs(threads),
        host_peak_gops=kernel_gops(host, shape.compute, threads), host_core_gflops=host.core_gflops(),
        host_overlap=host.overlap, decode_position=decode_position, cpu_wait_fraction=cpu_wait_fraction,
    )
    if prefill_s and prefill_s > 0 and prompt_tokens:
        cal.prefill_efficiency = shape.prefill_flops(prompt_tokens) / (cal.host_peak_gops * 1e9 * prefill_s)
        cal.compute_efficiency = cal.prefill_efficiency
    if forward_s and forward_s > 0 and cal.compute_efficiency > 0:
        # decode cannot run faster than its own arithmetic: a decode faster than the rate the prefill implies
        # shows the decode's kernels are at least that efficient (or the prefill was disturbed)
        shown = shape.decode_flops(decode_position) / (cal.host_peak_gops * 1e9 * forward_s)
        cal.compute_efficiency = max(cal.compute_efficiency, shown)
    if forward_s and forward_s > 0:
        t_mem, t_cmp = roof_parts(shape, host, threads, decode_position, cal.compute_efficiency)
        roof = combine(t_mem, t_cmp, host.overlap)
        cal.forward_s, cal.roof_s = forward_s, roof
        if forward_s >= roof:
            cal.layer_overhead_s = (forward_s - roof) / max(1, shape.n_layers or 1)
        else:
            cal.roof_efficiency = roof / forward_s
        if token_latency_s:
            cal.token_overhead_s = max(0.0, token_latency_s - forward_s)
    if batch32_s and batch32_s > 0 and batch_tokens:
        cal.encoder_efficiency = 32 * batch_tokens * shape.flops_per_token / (cal.host_peak_gops * 1e9 * batch32_s)
    if peak_rss_bytes:
        base = base_rss_bytes or 0
        extra = max(0, peak_rss_bytes - base - shape.weight_bytes - shape.kv_bytes(kv_positions))
        cal.base_rss_bytes = base
        if shape.backend == "onnx":
            cal.runtime_extra_ratio = extra / max(1, shape.weight_bytes)
        else:
            cal.runtime_extra_bytes = extra
    return cal


def predict(
    shape: ModelShape, target: TargetProfile, cal: Calibration, *, threads: int | None = None,
    prompt_tokens: int = 128, gen_tokens: int = 128, context: int | None = None,
) -> Prediction:
    """Predicted decode/prefill speed and memory need of ``shape`` on ``target``."""
    if cal.backend != shape.backend:
        raise ConfigError(f"a {cal.backend} calibration cannot predict a {shape.backend} model: calibrate with a "
                          f"{shape.backend} artifact ('edgekit bench' on one)")
    n = min(threads or target.threads, target.threads)
    ctx = context or (shape.context_length and min(shape.context_length, 4096)) or 4096
    speed = cal.host_core_gflops / target.core_gflops()
    position = min(prompt_tokens + gen_tokens // 2, ctx)
    decode = decode_full = prefill = items = None
    rate = kernel_gops(target, shape.compute, n) * 1e9
    t_tok, bound = _roof(shape, target, n, position, cal)
    if shape.kind == "decoder":
        fixed = ((shape.n_layers or 1) * cal.layer_overhead_s + cal.token_overhead_s) * speed
        decode = 1.0 / (t_tok + fixed)
        t_full, _ = _roof(shape, target, n, ctx, cal)
        decode_full = 1.0 / (t_full + fixed)
        if cal.prefill_efficiency > 0:
            per_token = shape.prefill_flops(prompt_tokens) / prompt_tokens
            prefill = cal.prefill_efficiency * rate / per_token
    elif cal.encoder_efficiency > 0:
        bound = "compute"
        items = cal.encoder_efficiency * rate / (shape.flops_per_token * max(1, prompt_tokens))
    kv = shape.kv_bytes(ctx) if shape.kind == "decoder" else 0
    runtime = cal.base_rss_bytes + cal.runtime_extra_bytes + int(cal.runtime_extra_ratio * shape.weight_bytes)
    total = shape.weight_bytes + kv + runtime
    budget = int(target.app_ram_budget_gb.value * 1e9)
    return Prediction(
        target=target.name, threads=n, backend=shape.backend, calibrated_on=f"{cal.artifact} on {cal.host}",
        bound=bound, decode_tps=decode, decode_tps_at_context=decode_full, prefill_tps=prefill,
        encoder_items_per_s=items, bytes_per_token=int(shape.decode_bytes(position)),
        flops_per_token=int(shape.decode_flops(position)), context=ctx, weights_bytes=shape.weight_bytes, kv_bytes=kv,
        runtime_bytes=runtime, memory_bytes=total, ram_budget_bytes=budget, fits=total <= budget,
        prediction_only_target=target.prediction_only,
    )


# ---- calibrations kept between commands -------------------------------------------

def _store_path(backend: str):
    return cache_dir() / "calibration" / f"{backend.replace('.', '')}.json"


BUSY = 0.25  # a wall-clock calibration whose run waited longer than this for a CPU is not kept for later predictions


def save_calibration(cal: Calibration) -> bool:
    """Keep the latest decoder calibration per backend for 'edgekit predict --params' (not a busy host's wall clock:
    a CPU-time calibration is not disturbed by waiting)."""
    busy = cal.timing != "cpu" and (cal.cpu_wait_fraction or 0.0) > BUSY
    if cal.kind != "decoder" or cal.forward_s <= 0 or busy:
        return False
    path = _store_path(cal.backend)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, cal.model_dump(mode="json"))
    except OSError:
        return False
    return True


def load_calibration(backend: str) -> Calibration | None:
    """The kept calibration of ``backend``, or None when there is none that this edgekit can read."""
    path = _store_path(backend)
    try:
        return load_versioned(Calibration, read_json(path), where=str(path), error=ConfigError)
    except (OSError, ValueError, ConfigError):
        return None
