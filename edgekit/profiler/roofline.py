"""Predict tokens/s and memory on a target from the model's shape, the target's profile and a host calibration.

Decode is memory-bound: every token streams the weights (``ModelShape.decode_bytes``)
through the memory system, so a token takes at least bytes / bandwidth, or its
arithmetic / the achievable compute rate when the cores are the tighter limit
(the roof is the larger of the two). Real runtimes add work neither roof
accounts for: dispatch and synchronisation of every layer inside the forward
pass, and the per-token loop around it (sampling, the confidence softmax,
detokenization). The calibration measures these on the host with the same
runtime, at the bench's thread count, against the microbenchmarked host profile:

* ``prefill_efficiency``: prefill is compute-bound; the achieved fraction of the
  host's peak (fp32, or int8 for integer GEMMs; see ``shape.INT8_COMPUTE``). The
  decode compute roof uses the same fraction (``compute_efficiency``), raised to
  what the decode itself shows when that is more.
* ``forward_s`` (model time per decoded token) against the roof: when slower,
  the difference is charged per layer (``layer_overhead_s``); when faster (the
  runtime streams better than a numpy copy), the ratio becomes
  ``roof_efficiency`` above 1 and nothing is charged per layer.
* ``token_overhead_s``: the loop's own time per token.
* memory: the interpreter and libraries (``base_rss_bytes``), the weights, the
  KV cache, and what the runtime adds on top: for llama.cpp a fixed compute
  buffer, for onnxruntime a multiple of the weights (pre-packed copies).

On a target, per-layer and per-token overheads scale with the speed of one core
(fp32 GFLOP/s of one core, host / target) and stay constant across thread
counts; the roofs use the target's bandwidth and peak at its thread count.
Constant overheads were the better choice on the host: predicting 1 thread from
a 2-thread calibration, all four SmolLM2 variants (GGUF Q4_1, ONNX fp32, int8,
int4) landed within about 10% on a quiet machine, whereas scaling the overhead
by Amdahl's law with the serial share of a small matrix-vector product measured
on the same host (0.34) came out 10-30% low. Predictions are for edgekit's runtimes on the
target; the tests compare them with published llama.cpp measurements.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import ConfigError
from edgekit.profiler.shape import ModelShape
from edgekit.targets.profile import TargetProfile

CALIBRATION_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Calibration(_Strict):
    """How one runtime performed on the host, relative to the host's roofs."""

    schema_version: int = CALIBRATION_VERSION
    backend: Literal["onnx", "llama.cpp"]
    kind: Literal["decoder", "encoder", "classifier"] = "decoder"
    artifact: str
    host: str = Field(description="host name and chip")
    measured_at: str
    threads: int
    cpu_wait_fraction: float | None = Field(None, description="of the run calibrated on: high means a busy host")
    compute: Literal["fp32", "int8"]
    host_bandwidth_gbs: float
    host_peak_gops: float
    host_core_gflops: float
    decode_position: int = 0
    forward_s: float = 0.0
    roof_s: float = 0.0
    roof_efficiency: float = 1.0
    layer_overhead_s: float = 0.0
    token_overhead_s: float = 0.0
    prefill_efficiency: float = 0.0
    compute_efficiency: float = Field(0.0, description="decode's compute roof: the prefill's, or more if decode shows it")
    encoder_efficiency: float = 0.0
    base_rss_bytes: int = 0
    runtime_extra_bytes: int = Field(0, description="llama.cpp: fixed bytes beyond weights and KV")
    runtime_extra_ratio: float = Field(0.0, description="onnx: extra bytes per weight byte")


class Prediction(_Strict):
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


def _roof(shape: ModelShape, profile: TargetProfile, threads: int, position: int, cal: "Calibration") -> tuple[float, str]:
    """Seconds per decoded token at ``position`` by the larger roof, and which one it is."""
    t_mem = shape.decode_bytes(position) / (profile.bandwidth_gbs(threads) * 1e9)
    t_cmp = 0.0
    if cal.compute_efficiency > 0:
        t_cmp = shape.decode_flops(position) / (profile.peak_gops(shape.compute, threads) * 1e9 * cal.compute_efficiency)
    t, bound = (t_mem, "memory") if t_mem >= t_cmp else (t_cmp, "compute")
    return t / cal.roof_efficiency, bound


def calibrate(
    shape: ModelShape, host: TargetProfile, *, threads: int, artifact: str, measured_at: str,
    forward_s: float | None = None, token_latency_s: float | None = None, decode_position: int = 0,
    prefill_s: float | None = None, prompt_tokens: int = 0, batch32_s: float | None = None, batch_tokens: int = 0,
    peak_rss_bytes: int | None = None, base_rss_bytes: int | None = None, kv_positions: int = 0,
    cpu_wait_fraction: float | None = None,
) -> Calibration:
    """A :class:`Calibration` from one artifact's host measurements (medians over runs)."""
    cal = Calibration(
        backend=shape.backend, kind=shape.kind, artifact=artifact, host=f"{host.name} ({host.soc or host.arch})",
        measured_at=measured_at, threads=threads, compute=shape.compute,
        host_bandwidth_gbs=host.bandwidth_gbs(threads), host_peak_gops=host.peak_gops(shape.compute, threads),
        host_core_gflops=host.core_gflops(), decode_position=decode_position, cpu_wait_fraction=cpu_wait_fraction,
    )
    if prefill_s and prefill_s > 0 and prompt_tokens:
        cal.prefill_efficiency = shape.prefill_flops(prompt_tokens) / (cal.host_peak_gops * 1e9 * prefill_s)
        cal.compute_efficiency = cal.prefill_efficiency
    if forward_s and forward_s > 0 and cal.compute_efficiency > 0:
        # decode cannot run faster than its own compute roof: a measured decode faster than the roof the
        # prefill implies shows the decode's arithmetic is at least that efficient (or the prefill was disturbed)
        shown = shape.decode_flops(decode_position) / (cal.host_peak_gops * 1e9 * forward_s)
        cal.compute_efficiency = max(cal.compute_efficiency, shown)
    if forward_s and forward_s > 0:
        roof, _ = _roof(shape, host, threads, decode_position, cal)
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
    t_tok, bound = _roof(shape, target, n, position, cal)
    if shape.kind == "decoder":
        fixed = ((shape.n_layers or 1) * cal.layer_overhead_s + cal.token_overhead_s) * speed
        decode = 1.0 / (t_tok + fixed)
        t_full, _ = _roof(shape, target, n, ctx, cal)
        decode_full = 1.0 / (t_full + fixed)
        if cal.prefill_efficiency > 0:
            per_token = shape.prefill_flops(prompt_tokens) / prompt_tokens
            prefill = cal.prefill_efficiency * target.peak_gops(shape.compute, n) * 1e9 / per_token
    elif cal.encoder_efficiency > 0:
        bound = "compute"
        items = cal.encoder_efficiency * target.peak_gops(shape.compute, n) * 1e9 / (shape.flops_per_token * max(1, prompt_tokens))
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
    from edgekit.manifest import cache_dir

    return cache_dir() / "calibration" / f"{backend.replace('.', '')}.json"


BUSY = 0.25  # a calibration whose run waited longer than this for a CPU is not kept for later predictions


def save_calibration(cal: Calibration) -> bool:
    """Keep the latest decoder calibration per backend for 'edgekit predict --params' (not a busy host's)."""
    from edgekit.manifest import write_json_atomic

    if cal.kind != "decoder" or cal.forward_s <= 0 or (cal.cpu_wait_fraction or 0.0) > BUSY:
        return False
    path = _store_path(cal.backend)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, cal.model_dump(mode="json"))
    except OSError:
        return False
    return True


def load_calibration(backend: str) -> Calibration | None:
    path = _store_path(backend)
    try:
        return Calibration.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError):
        return None
