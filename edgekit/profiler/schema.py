"""The bench report: one versioned JSON schema for ONNX and GGUF, decoders and encoders.

``BenchReport`` is what ``edgekit bench -o FILE`` writes (``--json`` prints) and what
``report.py`` renders as Markdown and PNG. Readers check ``schema`` and
``schema_version``; fields are added with defaults, and a change in meaning
bumps the version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from edgekit.names import Format
from edgekit.profiler.roofline import Calibration, Prediction
from edgekit.profiler.shape import ModelShape
from edgekit.strict import StrictModel
from edgekit.targets.profile import TargetProfile

REPORT_SCHEMA = "edgekit.bench"
REPORT_VERSION = 1


class Spread(StrictModel):
    """Median and range over the measured runs (warm-up runs are not counted)."""

    median: float
    min: float
    max: float
    n: int


class Percentiles(StrictModel):
    p50: float
    p90: float
    p99: float


class RunRecord(StrictModel):
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


class DecoderSummary(StrictModel):
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


class BatchSummary(StrictModel):
    latency_s: Percentiles
    items_per_s: float


class EncoderSummary(StrictModel):
    prompt_tokens: int
    load_s: Spread
    batches: dict[str, BatchSummary]


class GateSummary(StrictModel):
    status: str
    metric: str | None = None
    value: float | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class RamCheck(StrictModel):
    target: str
    ram_budget_bytes: int
    peak_rss_bytes: int
    exceeds_budget: bool


class PredictionCheck(StrictModel):
    """A device run's measurement against edgekit's prediction for that device; error = predicted / measured - 1."""

    target: str = Field(description="the profile predicted for: the device's detected one, or a preset")
    profile_source: str = Field(description="'detected on the device' or 'preset'")
    calibrated_on: str
    decode_tps_predicted: float | None = None
    decode_tps_measured: float | None = None
    decode_error_pct: float | None = None
    prefill_tps_predicted: float | None = None
    prefill_tps_measured: float | None = None
    prefill_error_pct: float | None = None
    items_per_s_predicted: float | None = None
    items_per_s_measured: float | None = None
    items_error_pct: float | None = None


DeviceFailure = Literal["out_of_memory", "timeout", "connection_lost", "unreachable", "disk_full", "crashed", "error"]


class ArtifactResult(StrictModel):
    device: str | None = Field(None, description="the device the runs ran on (None: this machine)")
    failure: DeviceFailure | None = Field(None, description="device runs: why the artifact failed there")
    label: str
    path: str
    format: Format
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
    check: PredictionCheck | None = Field(None, description="device runs: measured against predicted")


class BenchSettings(StrictModel):
    prompt_tokens: int
    gen_tokens: int
    runs: int
    warmup: int
    threads: int | None
    context: int | None
    timeout_s: float
    batch_reps: int
    targets: list[str]


class DeviceSummary(StrictModel):
    """One device of a device bench: what it is, how it went, what went over the wire."""

    name: str
    address: str
    status: Literal["ok", "failed", "unreachable"]
    error: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict, description="OS, arch, Python, CPU, cores, RAM, free disk")
    setup_cached: bool | None = None
    bytes_sent: int = 0
    pushes_skipped: int = 0
    pushes: int = 0


class BenchReport(StrictModel):
    schema_: Literal["edgekit.bench"] = Field(REPORT_SCHEMA, alias="schema")
    schema_version: int = REPORT_VERSION
    created_at: str
    edgekit_version: str
    host: TargetProfile | None = None
    targets: list[TargetProfile] = Field(default_factory=list)
    settings: BenchSettings
    results: list[ArtifactResult]
    devices: list[DeviceSummary] = Field(default_factory=list, description="devices the runs went to over SSH")

    model_config = ConfigDict(populate_by_name=True)  # merged with StrictModel's

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def failed(self) -> list[ArtifactResult]:
        return [r for r in self.results if r.status != "ok"]
