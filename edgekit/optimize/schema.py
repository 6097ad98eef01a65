"""The optimize report: one versioned JSON schema for the plan (``dry_run``) and the full run.

``OptimizeReport`` is what ``optimize.json`` holds and what report.py renders as
Markdown and PNG. Every candidate is one :class:`CandidateRecord` whatever became
of it: chosen, ok (met every constraint, not the best), rejected (exported, then
missed a constraint), pruned (ruled out before export: by prediction, or because
a higher-bit candidate of its format already missed the quality floor), failed
(the export or the bench broke), planned (``dry_run``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from edgekit.manifest import GateReport
from edgekit.names import Format
from edgekit.strict import StrictModel

REPORT_SCHEMA = "edgekit.optimize"
REPORT_VERSION = 1

Objective = Literal["decode", "prefill", "size", "ttft"]
OBJECTIVES: tuple[str, ...] = ("decode", "prefill", "size", "ttft")
Status = Literal["chosen", "ok", "rejected", "pruned", "failed", "planned"]
# Why a candidate was pruned or rejected (``reason_code``); the text (``reason``) says it with the numbers.
ReasonCode = Literal["ram", "min_decode", "max_size", "quality_floor", "quality_monotone", "gate", "export_failed",
                     "bench_failed"]


class Constraints(StrictModel):
    min_top1: float | None = Field(None, description="gate top-1 agreement at least this")
    max_kl: float | None = Field(None, description="gate mean next-token KL at most this")
    max_size_mb: float | None = Field(None, description="artifact size at most this many MB (1e6 bytes)")
    min_decode: float | None = Field(None, description="decode tokens/s on the target at least this")
    objective: Objective = "decode"

    @property
    def quality(self) -> bool:
        return self.min_top1 is not None or self.max_kl is not None


class Speeds(StrictModel):
    """Speeds at one place: measured (host or device) or predicted for the target."""

    decode_tps: float | None = None
    prefill_tps: float | None = None
    ttft_s: float | None = Field(None, description="time to first token: the prompt's prefill")
    memory_bytes: int | None = Field(None, description="predicted: weights + KV cache + runtime; measured: peak RSS")
    fits: bool | None = Field(None, description="memory within the target's app RAM budget")


class PlanEstimate(StrictModel):
    """What the shape-based prediction says before anything is exported (parameter count x bits per weight)."""

    size_bytes: int
    memory_bytes: int = Field(description="weights + KV cache at the context (+ runtime, when calibrated)")
    memory_has_runtime: bool = False
    decode_tps: float | None = Field(None, description="None: no calibration of this runtime on this machine yet")
    prefill_tps: float | None = None
    calibrated_on: str | None = None


class CandidateRecord(StrictModel):
    label: str = Field(description="format-quant, e.g. gguf-q4_k_m")
    format: Format
    quant: str
    bpw: float = Field(description="effective bits per weight (edgekit.quants): the order quality is pruned in")
    knobs: dict[str, Any] = Field(default_factory=dict, description="export settings beyond the quantization")
    threads: int = Field(description="threads on the target")
    key: str = Field(description="cache key: source content, format, quant, knobs, gate prompts, edgekit version, "
                     "export code")
    status: Status = "planned"
    reason: str | None = None
    reason_code: ReasonCode | None = None
    misses: list[str] = Field(default_factory=list, description="every constraint it misses, with the numbers")
    plan: PlanEstimate
    cached: bool = Field(False, description="its export and gate were in the cache before this run")
    exported_now: bool = False
    export_s: float | None = None
    gate: GateReport | None = None
    size_bytes: int | None = Field(None, description="the artifact's files (None: not exported)")
    measured_on: str | None = Field(None, description="'host' or the device's name")
    measured: Speeds | None = None
    bench_cached: bool = False
    predicted: Speeds | None = Field(None, description="for the target, from the artifact and a host calibration")
    predicted_from: str | None = Field(None, description="the calibration the prediction used")
    objective_value: float | None = None
    spread: dict[str, float] = Field(default_factory=dict, description="relative range (max - min) / median of "
                                     "each measured speed over the bench runs: decode_tps, prefill_tps, ttft_s")
    cpu_wait: float | None = Field(None, description="share of its bench runs' time spent waiting for a CPU "
                                   "(median): how busy the host was while it was measured")
    pareto: bool = False
    artifact: str | None = Field(None, description="the artifact in edgekit's cache")

    def metric(self, name: str) -> float | None:
        return self.gate.metrics.get(name) if self.gate is not None else None


class Settings(StrictModel):
    formats: list[str]
    quants: list[str]
    runs: int
    warmup: int
    prompt_tokens: int
    gen_tokens: int
    host_threads: int | None
    context: int
    quality_prune: bool
    prompts_sha256: str


class Counters(StrictModel):
    candidates: int = 0
    pruned_before_export: int = 0
    exports: int = Field(0, description="exports (and gates) made by this run")
    exports_reused: int = Field(0, description="exports (and gates) taken from the cache")
    benches: int = 0
    benches_reused: int = 0


class OptimizeReport(StrictModel):
    schema_: Literal["edgekit.optimize"] = Field(REPORT_SCHEMA, alias="schema")
    schema_version: int = REPORT_VERSION
    created_at: str
    edgekit_version: str
    source: str
    source_sha256: str
    target: str
    target_threads: int
    ram_budget_bytes: int
    device: str | None = None
    constraints: Constraints
    settings: Settings
    dry_run: bool = False
    candidates: list[CandidateRecord]
    choice: str | None = None
    tie_band: float | None = Field(None, description="candidates within this fraction of the best objective value "
                                   "were tied (the speed measurements' noise): the smaller, then the better gated won")
    tied: list[str] = Field(default_factory=list, description="the candidates tied with the best, the choice among them")
    pareto: list[str] = Field(default_factory=list, description="labels on the quality / speed / size front")
    counters: Counters
    wall_s: float = 0.0
    artifact: str | None = Field(None, description="where the chosen artifact was written (OUT/artifact)")

    model_config = ConfigDict(populate_by_name=True)  # merged with StrictModel's

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def candidate(self, label: str) -> CandidateRecord:
        return next(c for c in self.candidates if c.label == label)
