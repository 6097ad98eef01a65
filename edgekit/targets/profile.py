"""``TargetProfile``: what a device offers an on-device model, each number with its source.

A profile says how many cores a device has and which SIMD features they offer,
how much RAM an app may use, how fast memory streams (GB/s) and how much
arithmetic the cores can do (fp32 GFLOP/s and int8 GOP/s). The profiler's
roofline turns those numbers into predicted tokens/s and memory need, so every
number carries a ``source`` note: a spec sheet, a published measurement, a
derivation (cores x GHz x ops/cycle), or "measured by edgekit targets detect".

Profiles are TOML files: the presets ship in ``edgekit/targets/presets/`` and a
user adds their own with ``--target path/to/device.toml``. Units: GB = 1e9 bytes.
Numbers are ``{ value = 17.1, source = "..." }`` tables, so a number without a
source does not validate.
"""

from __future__ import annotations

import datetime as _dt
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

import edgekit.tomlio as tomlio
from edgekit.errors import ConfigError
from edgekit.fileio import check_output_file, not_a_file, write_text_atomic
from edgekit.strict import StrictModel, load_versioned

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# ISA feature names a profile may list (canonical, lower case); detect maps /proc/cpuinfo onto these.
KNOWN_ISA = {
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
    "amx_int8", "amx_bf16", "neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2", "sme", "amx_apple",
}


class Sourced(StrictModel):
    """A number and where it comes from."""

    value: float = Field(gt=0)
    source: str = Field(min_length=3, description="spec sheet, publication (with URL), derivation, or measurement")


class SourcedFraction(StrictModel):
    """A share between 0 and 1 and where it comes from."""

    value: float = Field(ge=0, le=1)
    source: str = Field(min_length=3, description="publication (with URL), derivation, or measurement")


class CoreCluster(StrictModel):
    name: str = Field(min_length=1, description="core type, e.g. Cortex-A76")
    cores: int = Field(ge=1)
    max_ghz: float | None = Field(default=None, gt=0)


class PublishedRun(StrictModel):
    """A published measurement of a model on this device, used to check the profiler's predictions."""

    model: str
    params_b: float = Field(gt=0, description="parameters, billions")
    quant: str = Field(description="GGUF type or ONNX precision: q4_k_m, q8_0, f16, int4 ...")
    size_gb: float | None = Field(default=None, gt=0, description="model file size, GB (1e9 bytes), when published")
    untied_embedding_params_b: float = Field(
        default=0.0, ge=0, description="parameters of an input embedding that is only gathered (not read per token)"
    )
    output_params_b: float = Field(default=0.0, ge=0, description="vocabulary x hidden size, billions (logits layer)")
    layers: int | None = Field(default=None, ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    runtime: str = Field(description="what ran it: llama.cpp (build), ollama, llamafile ...")
    threads: int = Field(ge=1)
    decode_tps: float | None = Field(default=None, gt=0)
    prefill_tps: float | None = Field(default=None, gt=0)
    prefill_tokens: int | None = Field(default=None, ge=1)
    source: str = Field(min_length=3)
    decode_tolerance: float = Field(
        default=0.35, gt=0, description="relative error the prediction must stay within: the presets' bandwidths are "
        "estimates (70% of the wire rate, TI SPRACV1B measures 67-79%), and how much arithmetic hides under streaming "
        "is known for few devices (memory_compute_overlap 0 or 1 moves a Pi 5 3B prediction from -17% to +29%)")
    prefill_tolerance: float = Field(
        default=0.6, gt=0, description="wider: llama.cpp picks a GEMM kernel per weight type and build, and one "
        "calibration measures one of them (on the x86 host at one thread: q4_1 53, q8_0 105, repacked q4_0 189 GOP/s)"
    )
    tolerance_note: str = Field(default="", description="why a tolerance is wider than the default")


class TargetProfile(StrictModel):
    """A device the profiler measures on (the host) or predicts for (a preset or a user's TOML file)."""

    schema_version: int = SCHEMA_VERSION
    name: str
    description: str = ""
    arch: Literal["x86_64", "arm64"]
    os: Literal["linux", "android", "macos", "ios", "windows"]
    soc: str = Field(default="", description="chip name")
    clusters: list[CoreCluster] = Field(min_length=1)
    threads: int = Field(ge=1, description="threads an inference runtime should use (the big cores)")
    isa: list[str] = Field(default_factory=list)
    ram_gb: Sourced
    app_ram_budget_gb: Sourced = Field(description="RAM one app may use before the OS kills it or it swaps")
    memory_bandwidth_gbs: Sourced = Field(
        description="sustained DRAM bandwidth with `threads` threads, STREAM-copy convention (bytes read + written)"
    )
    single_thread_bandwidth_gbs: Sourced | None = Field(default=None, description="the same with one thread")
    peak_gflops_fp32: Sourced = Field(description="fp32 GFLOP/s with `threads` threads")
    peak_gops_int8: Sourced = Field(description="int8 dot-product GOP/s with `threads` threads")
    single_thread_gflops_fp32: Sourced | None = None
    single_thread_gops_int8: Sourced | None = None
    peak_gflops_fp32_256: Sourced | None = Field(
        default=None, description="fp32 GFLOP/s with `threads` threads and vectors of at most 256 bits (AVX2): the "
        "width of llama.cpp's quantized x86 kernels; absent: peak_gflops_fp32 (no wider vectors)")
    single_thread_gflops_fp32_256: Sourced | None = None
    memory_compute_overlap: SourcedFraction | None = Field(
        default=None, description="how much of the arithmetic of a decoded token hides under its weight streaming: "
        "1 = fully (the roofline's max), 0 = not at all (the times add up); absent: 1")
    prediction_only: bool = Field(default=False, description="a device edgekit cannot run on; predictions only")
    published: list[PublishedRun] = Field(default_factory=list)
    notes: str = ""
    measured_at: str | None = Field(default=None, description="set on profiles written by 'edgekit targets detect'")
    measurement_cpu_wait: float | None = Field(
        default=None, ge=0, description="detect: share of the microbenchmarks' thread time spent waiting for a CPU"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be lower case letters, digits, '.', '_' or '-' (e.g. raspberry-pi-5)")
        return v

    @field_validator("isa")
    @classmethod
    def _isa(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - KNOWN_ISA)
        if unknown:
            raise ValueError(f"unknown ISA feature(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_ISA))}")
        return v

    @model_validator(mode="after")
    def _threads_fit(self) -> "TargetProfile":
        if self.threads > self.total_cores:
            raise ValueError(f"threads ({self.threads}) is more than the cores of all clusters ({self.total_cores})")
        return self

    @property
    def total_cores(self) -> int:
        return sum(c.cores for c in self.clusters)

    # ---- scaling with the thread count -------------------------------------------
    def bandwidth_gbs(self, threads: int | None = None) -> float:
        """Sustained bandwidth with ``threads`` threads: the single-thread figure scaled up to the all-thread one."""
        n = min(threads or self.threads, self.threads)
        full = self.memory_bandwidth_gbs.value
        if self.single_thread_bandwidth_gbs is None or n >= self.threads:
            return full
        one = self.single_thread_bandwidth_gbs.value
        return min(full, one + (full - one) * (n - 1) / max(1, self.threads - 1))

    def peak_gops(self, kind: str, threads: int | None = None) -> float:
        """Peak fp32 GFLOP/s (kind 'fp32') or int8 GOP/s (kind 'int8') with ``threads`` threads (linear in threads)."""
        n = min(threads or self.threads, self.threads)
        full = (self.peak_gops_int8 if kind == "int8" else self.peak_gflops_fp32).value
        single = self.single_thread_gops_int8 if kind == "int8" else self.single_thread_gflops_fp32
        if n >= self.threads:
            return full
        if single is not None:
            return min(full, single.value + (full - single.value) * (n - 1) / max(1, self.threads - 1))
        return full * n / self.threads

    def simd256_gflops(self, threads: int | None = None) -> float:
        """fp32 GFLOP/s with vectors of at most 256 bits (the 256-bit figures, else the fp32 peak), scaled as peak_gops."""
        if self.peak_gflops_fp32_256 is None:
            return self.peak_gops("fp32", threads)
        n = min(threads or self.threads, self.threads)
        full, single = self.peak_gflops_fp32_256.value, self.single_thread_gflops_fp32_256
        if n >= self.threads:
            return full
        if single is not None:
            return min(full, single.value + (full - single.value) * (n - 1) / max(1, self.threads - 1))
        return full * n / self.threads

    def core_gflops(self) -> float:
        """fp32 GFLOP/s of one core at 256-bit vectors at most: how fast serial work (dispatch, Python, sampling)
        runs relative to another device. Wider vectors (AVX-512) do not make scalar code faster."""
        return self.simd256_gflops(1)

    @property
    def overlap(self) -> float:
        """Share of a decoded token's arithmetic hidden under its weight streaming (1 when not stated)."""
        return 1.0 if self.memory_compute_overlap is None else self.memory_compute_overlap.value

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "arch": self.arch, "os": self.os, "soc": self.soc, "cores": self.total_cores,
            "threads": self.threads, "ram_gb": self.ram_gb.value, "app_ram_budget_gb": self.app_ram_budget_gb.value,
            "bandwidth_gbs": self.memory_bandwidth_gbs.value, "fp32_gflops": self.peak_gflops_fp32.value,
            "int8_gops": self.peak_gops_int8.value, "prediction_only": self.prediction_only,
        }


# ---- files ----------------------------------------------------------------------

def _toml_load(text: str, where: str) -> dict[str, Any]:
    return tomlio.loads(text, where)


def parse_profile(data: dict[str, Any], where: str) -> TargetProfile:
    """A :class:`TargetProfile` from parsed TOML/JSON; :class:`ConfigError` naming ``where`` and the field."""
    return load_versioned(TargetProfile, data, where=where, error=ConfigError,
                          hint="see 'edgekit targets show raspberry-pi-5' for a complete profile")


def load_profile_file(path: str | os.PathLike) -> TargetProfile:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"target profile {p} {not_a_file(p)}: pass a .toml profile or a preset name")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read target profile {p}: {exc}") from exc
    return parse_profile(_toml_load(text, str(p)), str(p))


def preset_dir():
    return importlib.resources.files("edgekit.targets") / "presets"


def preset_names() -> list[str]:
    return sorted(f.name[: -len(".toml")] for f in preset_dir().iterdir() if f.name.endswith(".toml"))


def load_preset(name: str) -> TargetProfile:
    res = preset_dir() / f"{name}.toml"
    if not res.is_file():
        raise ConfigError(f"unknown target {name!r}: use one of {', '.join(preset_names())}, 'host', or a .toml file")
    profile = parse_profile(_toml_load(res.read_text(), f"preset {name}"), f"preset {name}")
    if profile.name != name:
        raise ConfigError(f"preset file {name}.toml names itself {profile.name!r}")
    return profile


# ---- writing (detect --save) --------------------------------------------------------

def profile_to_toml(profile: TargetProfile) -> str:
    """TOML text of a profile; scalars and ``{value, source}`` numbers first, arrays of tables last."""
    return tomlio.dumps(profile.model_dump(mode="json", exclude_none=True))


def check_profile_path(path: str | os.PathLike, force: bool = False) -> Path:
    """Check where :func:`save_profile` will write, before any measuring: a new ``.toml`` path, or with
    ``force`` an existing target profile (or an empty file). Any other file is refused, never replaced."""
    p = Path(path).expanduser().absolute()
    if p.suffix != ".toml":
        raise ConfigError(f"{p}: a target profile file must end in .toml")
    if (p.exists() or p.is_symlink()) and not force:
        raise ConfigError(f"{p} already exists: choose another path or pass force=True", param="force")
    if p.exists() and (not p.is_file() or p.stat().st_size > 0):
        try:
            load_profile_file(p)
        except ConfigError:
            raise ConfigError(f"{p} is not an edgekit target profile: force=True replaces only a target profile; "
                              "choose another path", param="force") from None
    check_output_file(p, "path")  # its folder exists and takes a new file: checked before any measuring
    return p


def save_profile(profile: TargetProfile, path: str | os.PathLike, force: bool = False) -> Path:
    """Write ``profile`` as TOML through a temporary file and a rename; read it back to prove it loads."""
    p = check_profile_path(path, force)
    text = profile_to_toml(profile)
    parse_profile(_toml_load(text, str(p)), str(p))  # never write a file that would not load
    try:
        write_text_atomic(p, text)
    except OSError as exc:
        raise ConfigError(f"cannot write {p}: {exc.strerror or exc}") from exc
    return p


def today() -> str:
    return _dt.date.today().isoformat()
