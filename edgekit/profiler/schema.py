"""The bench report: one versioned JSON schema for ONNX and GGUF, decoders and encoders.

``BenchReport`` is what ``edgekit bench --json FILE`` writes and what
``report.py`` renders as Markdown and PNG. Readers check ``schema`` and
``schema_version``; fields are added with defaults, and a change in meaning
bumps the version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.profiler.roofline import Calibration, Prediction
from edgekit.profiler.shape import ModelShape
from edgekit.targets.profile import TargetProfile

REPORT_SCHEMA = "edgekit.bench"
REPORT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Spread(_Strict):
    """Median and range over the measured runs (warm-up runs are not counted)."""

    median: float
    min: float
    max: float
    n: int


class Percentiles(_Strict):
    p50: float
    p90: float
    p99: float


class RunRecord(_Strict):
    index: int
    warmup: bool
    ok: bool
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    error_type: str | None = None
    user_error: bool = False
    wall_s: float
    peak_rss_bytes: int | None = Field(None, description="ru_maxrss of the run's process, from wait4")
    cpu_wait_fraction: float | None = Field(None, description="share of thread time spent waiting for a CPU")
    measurements: dict[str, Any] | None = None


class DecoderSummary(_Strict):
    prompt_tokens: int
    generated_tokens: int
    decode_tokens: int
    load_s: Spread
    ttft_s: Spread
    prefill_tps: Spread
    decode_tps: Spread
    token_latency_s: Percentiles = Field(description="per decoded token, pooled over the measured runs")
    forward_s: Percentiles = Field(description="the model's forward pass per decoded token")
    token_overhead_s: float = Field(description="p50 token latency minus p50 forward: sampling, confidence, text")


class BatchSummary(_Strict):
    latency_s: Percentiles
    items_per_s: float


class EncoderSummary(_Strict):
    prompt_tokens: int
    load_s: Spread
    batches: dict[str, BatchSummary]


class GateSummary(_Strict):
    status: str
    metric: str | None = None
    value: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class RamCheck(_Strict):
    target: str
    ram_budget_bytes: int
    peak_rss_bytes: int
    exceeds_budget: bool


class ArtifactResult(_Strict):
    label: str
    path: str
    format: Literal["onnx", "gguf"]
    backend: str
    kind: str
    precision: str
    size_bytes: int
    gate: GateSummary | None = None
    shape: ModelShape
    threads: int
    status: Literal["ok", "partial", "failed"]
    error: str | None = None
    runs: list[RunRecord]
    peak_rss_bytes: Spread | None = None
    decoder: DecoderSummary | None = None
    encoder: EncoderSummary | None = None
    calibration: Calibration | None = None
    predictions: list[Prediction] = Field(default_factory=list)
    ram_checks: list[RamCheck] = Field(default_factory=list)


class BenchSettings(_Strict):
    prompt_tokens: int
    gen_tokens: int
    runs: int
    warmup: int
    threads: int | None
    context: int | None
    timeout_s: float
    batch_reps: int
    targets: list[str]


class BenchReport(_Strict):
    schema_: Literal["edgekit.bench"] = Field(REPORT_SCHEMA, alias="schema")
    schema_version: int = REPORT_VERSION
    created_at: str
    edgekit_version: str
    host: TargetProfile | None = None
    targets: list[TargetProfile] = Field(default_factory=list)
    settings: BenchSettings
    results: list[ArtifactResult]

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def failed(self) -> list[ArtifactResult]:
        return [r for r in self.results if r.status != "ok"]
