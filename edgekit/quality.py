"""The quality gate: compare an artifact with its reference model on the same inputs.

* decoders: next-token distributions at every position of every prompt, reference
  (transformers, fp32) vs artifact (onnxruntime or llama.cpp) on the same token ids:
  KL(reference || artifact) mean and max, and top-1 agreement;
* encoders: cosine similarity of pooled embeddings, mean and min;
* classifiers: label agreement and the largest absolute difference of a class probability.

Each precision has default thresholds (fp32 near-exact, quantized looser but
strict enough to catch a broken model); any of them can be overridden. A metric
outside its bound fails the gate: the exporter then raises
:class:`~edgekit.errors.QualityGateError` and writes nothing. A re-gate of an
existing artifact also fails when it measures clearly worse than the gate its
manifest recorded on the same prompts (:func:`check_recorded`): the artifact
changed since it was exported.

The reference computations import transformers and torch inside their functions
only; the artifact side goes through edgekit's own runtimes.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit import quants
from edgekit.errors import ConfigError, EdgekitError, MissingDependencyError, QualityGateError
from edgekit.fileio import not_a_file
from edgekit.manifest import GateReport, Manifest, model_info_from_folder
from edgekit.names import KIND_OF_TASK, KINDS
from edgekit.pooling import pool
from edgekit.progress import Progress, ensure
from edgekit.sources import ResolvedSource, infer_task
from edgekit.translate import translated

BUILTIN_PROMPTS: tuple[str, ...] = (
    "The capital of France is Paris, and the capital of Germany is",
    "Once upon a time, in a small village at the edge of a forest, there lived an old clockmaker who",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n",
    "Question: What is 17 multiplied by 3?\nAnswer:",
    "Here is a shopping list:\n1. Eggs\n2. Milk\n3.",
    '{"name": "Ada Lovelace", "born": 1815, "known_for": ["the first computer program",',
    "Photosynthesis is the process by which green plants use sunlight to",
    "La tour Eiffel a été construite pour l'Exposition universelle de 1889 et elle mesure",
    "Der schnelle braune Fuchs springt über den faulen Hund, während die Sonne",
    "El aprendizaje automático es una rama de la inteligencia artificial que",
    "机器学习是人工智能的一个分支，它使计算机能够",
    "<|im_start|>user\nGive me three tips for better sleep.<|im_end|>\n<|im_start|>assistant\n",
    "SELECT customer_id, SUM(amount) AS total FROM orders WHERE created_at >= '2024-01-01' GROUP BY",
    "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd",
    "To reset your password, open the settings page, click on 'Security', and then",
    "The mitochondria is often called the powerhouse of the cell because",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. The mission was called",
    "Error: cannot import name 'load' from partially initialized module. This usually means that",
    "User: I feel a bit stressed about my exam tomorrow.\nAssistant:",
    "The quick brown fox jumps over the lazy dog. 🦊 This sentence contains every letter of the alphabet and",
)

# For each metric: is the threshold an upper ("max") or a lower ("min") bound?
METRICS = {
    "kl_mean": "max",
    "kl_max": "max",
    "top1": "min",
    "cos_mean": "min",
    "cos_min": "min",
    "label_agreement": "min",
    "prob_diff_max": "max",
}
KIND_METRICS = dict(zip(KINDS, (
    ("kl_mean", "kl_max", "top1"),  # decoder
    ("cos_mean", "cos_min"),  # encoder
    ("label_agreement", "prob_diff_max"),  # classifier
)))

# Default thresholds per precision: the gate's bounds for every exportable row of edgekit.quants, keyed by
# the row's name (a new quantization type is a row there and its bounds here). fp32 exports are near-exact;
# quantized ones looser but below what a damaged model gives. Measured on SmolLM2-135M (20 built-in prompts):
# fp32 export KL 1e-8; fp16 5e-6; int8 block-wise 0.007 (top-1 0.93); int4 0.50 (top-1 0.63);
# one zeroed MLP down-projection KL 1.10 (top-1 0.63); one zeroed q-projection KL 0.24.
# 4-bit costs a 135M model a lot: the int4 bound only catches gross damage, the int8 bound
# catches a single zeroed projection.
DEFAULT_THRESHOLDS: dict[str, dict[str, dict[str, float]]] = {
    "decoder": {
        "fp32": {"kl_mean": 1e-4, "kl_max": 1e-2, "top1": 0.98},
        "f32": {"kl_mean": 1e-4, "kl_max": 1e-2, "top1": 0.98},  # GGUF rows: SmolLM2 real f32 KL 1e-6
        "fp16": {"kl_mean": 2e-3, "kl_max": 0.1, "top1": 0.95},
        "f16": {"kl_mean": 1e-3, "kl_max": 0.1, "top1": 0.95},  # real 7e-6; one zeroed mid-layer q_proj 0.066
        "bf16": {"kl_mean": 5e-3, "kl_max": 0.1, "top1": 0.95},  # real 2.7e-4 (max 0.004, top-1 0.986)
        # GGUF rows: "real" is the packaged SmolLM2 (its blocks on Q4_1's grid), "off-grid" the copy of
        # benchmarks/native_like.py with every block moved off it, as a natively trained checkpoint's are; the
        # 4-bit bounds are set from the off-grid copy, where the grid gives no head start.
        "q8_0": {"kl_mean": 0.03, "kl_max": 0.5, "top1": 0.9},  # real 0.0073/0.11/0.944; off-grid 0.010/0.12/0.939;
        # zeroed q 0.072/0.66/0.862
        "int8": {"kl_mean": 0.05, "kl_max": 1.0, "top1": 0.88},  # off-grid 0.010/0.09/0.928
        "q6_k": {"kl_mean": 0.06, "kl_max": 0.6, "top1": 0.87},  # real 0.027/0.25/0.914; off-grid 0.033/0.36/0.907;
        # zeroed q 0.090/0.71/0.827
        "q5_k_m": {"kl_mean": 0.15, "kl_max": 2.5, "top1": 0.75},  # real 0.111/1.45/0.827; off-grid 0.098/1.7/0.818;
        # zeroed q 0.175/2.56/0.785
        "q4_k_m": {"kl_mean": 0.25, "kl_max": 2.5, "top1": 0.72},  # real 0.084/1.20/0.853; off-grid 0.148/1.63/0.804
        # (the bounds 0.12 / 0.83 it had, set on the grid, failed the off-grid copy); zeroed q 0.143/0.91/0.813
        "q4_0": {"kl_mean": 1.2, "kl_max": 10.0, "top1": 0.45},  # real 0.60/6.9/0.563; off-grid 0.85/6.3/0.528;
        # zeroed down 0.79 on the grid: a 4-bit type without a mix only catches gross damage
        # int4 decoders from the fused builder (the int4 row's fused_plan in quants.py, measured beside it): off
        # the grid 0.215/2.65/0.731 (the plan it replaced, float-minimum blocks, 0.618/6.0/0.591 failed the
        # bounds it had, 0.12/2.5/0.83); on the grid the float-minimum plan 0.026/0.45/0.904. One zeroed ffn_down
        # still fails (tests/exporters/test_onnx_fused.py). Optimum-traced int4 decoders (onnxruntime's RTN
        # quantizer, far less accurate: README) are gated with the int4 row's traced_bounds in quants.py.
        "int4": {"kl_mean": 0.35, "kl_max": 4.0, "top1": 0.65},
    },
    "encoder": {
        "fp32": {"cos_mean": 0.9999, "cos_min": 0.999},
        "fp16": {"cos_mean": 0.999, "cos_min": 0.995},
        "int8": {"cos_mean": 0.98, "cos_min": 0.95},
        "int4": {"cos_mean": 0.95, "cos_min": 0.9},
    },
    "classifier": {
        "fp32": {"label_agreement": 1.0, "prob_diff_max": 1e-3},
        "fp16": {"label_agreement": 0.95, "prob_diff_max": 0.02},
        "int8": {"label_agreement": 0.9, "prob_diff_max": 0.15},
        "int4": {"label_agreement": 0.85, "prob_diff_max": 0.25},
    },
}

# The formats whose exporters make each kind (GGUF export is for decoders only).
FORMATS_OF_KIND = {"decoder": ("onnx", "gguf"), "encoder": ("onnx",), "classifier": ("onnx",)}


def gated_precisions(kind: str) -> list[str]:
    """The quantization types (edgekit.quants rows) an exporter makes for ``kind``: each needs gate bounds."""
    return [q.name for fmt in FORMATS_OF_KIND[kind] for q in quants.rows(fmt, export=True)]


def parse_threshold_overrides(items: Sequence[str] | None) -> dict[str, float]:
    """Parse ``metric=value`` strings from the command line."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise ConfigError(f"bad threshold={item!r}: use METRIC=VALUE with METRIC one of {', '.join(METRICS)}",
                              param="threshold")
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise ConfigError(f"bad threshold={item!r}: {value!r} is not a number", param="threshold") from exc
        if not math.isfinite(out[name]):
            raise ConfigError(f"bad threshold={item!r}: the value must be finite", param="threshold")
    return out


def thresholds_for(kind: str, precision: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The gate's bounds for a ``kind`` model at ``precision`` (a row of edgekit.quants), with ``overrides``."""
    table = DEFAULT_THRESHOLDS[kind]
    if precision not in table and precision in gated_precisions(kind):
        raise ConfigError(f"quantization {precision} has no gate bounds for {kind}s: add them to "
                          "edgekit.quality.DEFAULT_THRESHOLDS")
    base = dict(table.get(precision) or table["int4" if kind != "decoder" else "q4_0"])
    for name, value in (overrides or {}).items():
        if name not in KIND_METRICS[kind]:
            raise ConfigError(f"threshold {name} does not apply to a {kind}: use {', '.join(KIND_METRICS[kind])}")
        base[name] = value
    return base


def load_prompts(path: str | Path | None) -> list[str]:
    """The gate's prompts: the built-in set, or one prompt per non-empty line of ``path``."""
    if path is None:
        return list(BUILTIN_PROMPTS)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"prompts file {p} {not_a_file(p)}: pass a text file with one prompt per line")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"prompts file {p} cannot be read as UTF-8 text: {exc}") from exc
    prompts = [line.replace("\\n", "\n") for line in lines if line]
    if not prompts:
        raise ConfigError(f"prompts file {p} is empty: put one prompt per line")
    return prompts


# What the re-gate needs of a source, per artifact kind: the reference model it builds (a causal LM for a
# decoder, a sequence classifier for a classifier; an encoder artifact runs any checkpoint's base model).
_SOURCE_TASK_OF_KIND = {"decoder": "text-generation", "classifier": "text-classification"}
_SHAPE_FACTS = (("architecture", "architecture"), ("vocab_size", "vocabulary size"), ("hidden_size", "hidden size"),
                ("n_layers", "layers"), ("n_heads", "attention heads"), ("n_kv_heads", "key/value heads"),
                ("head_dim", "head size"))


def check_source_matches(manifest: Manifest, source: ResolvedSource, artifact: str | Path) -> None:
    """Refuse a re-gate source that is not the model ``artifact`` was exported from, before any model runs.

    Compares the source's config with the manifest's model facts (architecture, vocabulary and hidden
    sizes, layers, heads) and checks that the source can be the artifact's reference: a causal LM for a
    decoder, a classifier with as many labels for a classifier. Without this a mismatched source ends
    in a numpy broadcasting error or an IndexError deep in the reference model. Raises
    :class:`ConfigError` naming ``source``.
    """
    art, kind = manifest.model, KIND_OF_TASK[manifest.task]
    src = model_info_from_folder(source.path, manifest.task)
    diffs = [f"{label} {getattr(art, key)} vs {getattr(src, key)}" for key, label in _SHAPE_FACTS
             if getattr(art, key) not in (None, "unknown") and getattr(src, key) not in (None, "unknown")
             and getattr(art, key) != getattr(src, key)]
    try:
        source_task = infer_task(source.config)
    except EdgekitError:
        source_task = None
    wanted = _SOURCE_TASK_OF_KIND.get(kind)
    if wanted is not None and source_task is not None and source_task != wanted:
        diffs.insert(0, f"a {manifest.task} artifact needs a {wanted} source, not {source_task} "
                        f"({', '.join(source.architectures) or source.model_type})")
    if kind == "classifier" and art.labels and not diffs and len(art.labels) != len(src.labels or ()):
        diffs.append(f"{len(art.labels)} labels vs {len(src.labels or ())}")
    if diffs:
        raise ConfigError(f"the source {source.path.name} is not the model {Path(artifact).name} was exported from "
                          f"(artifact vs source: {'; '.join(diffs)}): pass that model as source=", param="source")


def prompts_digest(prompts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for prompt in prompts:
        h.update(prompt.encode("utf-8") + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- metrics


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def decoder_metrics(ref_logprobs: Sequence[np.ndarray], art_logits: Sequence[np.ndarray]) -> dict[str, float]:
    """KL(ref || artifact) per position (mean and max over all positions) and top-1 agreement."""
    kls, agree, total = [], 0, 0
    for ref, art in zip(ref_logprobs, art_logits):
        if ref.shape != art.shape:
            raise ConfigError(f"reference and artifact logits differ in shape: {ref.shape} vs {art.shape}")
        lp = ref.astype(np.float64)
        lq = log_softmax(art)
        kl = (np.exp(lp) * (lp - lq)).sum(axis=-1)
        kls.append(np.maximum(kl, 0.0))
        agree += int((lp.argmax(-1) == lq.argmax(-1)).sum())
        total += lp.shape[0]
    allkl = np.concatenate(kls)
    return {"kl_mean": float(allkl.mean()), "kl_max": float(allkl.max()), "top1": agree / total}


def encoder_metrics(ref: np.ndarray, art: np.ndarray) -> dict[str, float]:
    a = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    b = art / np.linalg.norm(art, axis=1, keepdims=True)
    cos = (a.astype(np.float64) * b.astype(np.float64)).sum(axis=1)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min())}


def classifier_metrics(ref: np.ndarray, art: np.ndarray) -> dict[str, float]:
    return {
        "label_agreement": float((ref.argmax(1) == art.argmax(1)).mean()),
        "prob_diff_max": float(np.abs(ref - art).max()),
    }


def judge(kind: str, metrics: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """The failed checks, as readable lines (empty when the gate passes)."""
    failures = []
    for name, bound in thresholds.items():
        value = metrics[name]
        bad = value > bound if METRICS[name] == "max" else value < bound
        if bad or not math.isfinite(value):
            op = "<=" if METRICS[name] == "max" else ">="
            failures.append(f"{name} = {value:.6g}, needs {op} {bound:g}")
    return failures


# A re-gate on the prompts the artifact was gated on at export must reproduce the manifest's verdict: a
# decoder's mean KL may exceed the recorded one by DRIFT_REL of it (or by DRIFT_FLOOR of the bound, for the
# near-exact precisions, whose recorded KL is below machine-to-machine float noise), never by more. The
# bounds alone cannot see damage smaller than a precision's own loss. SmolLM2-135M, 20 built-in prompts
# (tests/test_corruption.py): fused int4 recorded 0.193, bound 0.35: one layer's RMSNorm zeroed 0.315, rope
# theta 1e5 -> 1e4 0.230 (limit 0.213); traced int4 recorded 0.539, bound 0.8: zeroed RMSNorm 0.644 (limit
# 0.593); int8 recorded 0.0072, bound 0.05: rope theta 0.0376 (limit 0.0097). An unchanged
# artifact re-gated on the same machine reproduces its recorded KL to every printed digit; across machines
# only float rounding changes, while the stored weights' quantization error, which dominates the lossy
# precisions, does not. (One exception: an int8/int4 ONNX export made where onnxruntime computes in fp32,
# without AVX2 or ARM dot-product, and re-gated where it computes in int8 measures a larger KL.)
DRIFT_METRICS = ("kl_mean",)
DRIFT_REL = 0.10
DRIFT_FLOOR = 0.05


def drift_limit(recorded: float, bound: float) -> float:
    """The largest mean KL a re-gate may measure, given the export's ``recorded`` value and the ``bound``."""
    return max(recorded * (1 + DRIFT_REL), recorded + DRIFT_FLOOR * bound)


def check_recorded(report: GateReport, recorded: GateReport | None) -> GateReport:
    """``report`` of a re-gate, failed when it is worse than the gate ``recorded`` at export on the same prompts
    (see DRIFT_REL): the artifact changed since it was gated, even while inside the bounds."""
    if (recorded is None or recorded.status != "passed" or report.status == "skipped"
            or recorded.prompts_sha256 != report.prompts_sha256):
        return report
    failures = []
    for name in DRIFT_METRICS:
        if name in recorded.metrics and name in report.metrics and name in report.thresholds:
            value, limit = report.metrics[name], drift_limit(recorded.metrics[name], report.thresholds[name])
            if not value <= limit:
                failures.append(f"{name} = {value:.6g}, needs <= {limit:.6g} (the export measured "
                                f"{recorded.metrics[name]:.6g} on the same prompts: the artifact changed since)")
    if not failures:
        return report
    return report.model_copy(update={"status": "failed", "failures": [*report.failures, *failures]})


# ---------------------------------------------------------------- references


@dataclass
class Reference:
    """The reference model's outputs on the gate's inputs, computed once per export."""

    kind: str
    prompts: list[str]
    token_ids: list[list[int]] = field(default_factory=list)
    outputs: Any = None
    description: str = "transformers fp32"


def _torch():
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("torch and transformers (for the quality gate's reference)", "export") from exc
    return torch


def compute_reference(
    kind: str,
    source: Path,
    prompts: list[str],
    tokenizer,
    *,
    encoder_settings: tuple[str, bool] = ("mean", False),
    allow_pickle: bool = False,
    progress: Progress | None = None,
) -> Reference:
    """Run the original Hugging Face model on the prompts, tokenized by ``tokenizer`` (the artifact's)."""
    progress = ensure(progress)
    with translated("transformers", "reference", name=Path(source).name):  # transformers/torch; bugs propagate
        return _reference(kind, source, prompts, tokenizer, encoder_settings, allow_pickle, progress)


def _reference(kind, source, prompts, tokenizer, encoder_settings, allow_pickle, progress) -> Reference:
    torch = _torch()
    import transformers

    ref = Reference(kind=kind, prompts=prompts)
    kwargs = {"dtype": torch.float32, "use_safetensors": not allow_pickle}
    with progress.step("gate: reference model (transformers)", total=len(prompts)) as bar, torch.inference_mode():
        if kind == "decoder":
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs).eval()
            ref.outputs = []
            for prompt in prompts:
                ids = tokenizer.encode(prompt, add_special=True)
                ref.token_ids.append(ids)
                logits = model(torch.tensor([ids])).logits[0].float().numpy()
                ref.outputs.append(log_softmax(logits).astype(np.float32))
                bar.advance()
        elif kind == "encoder":
            model = transformers.AutoModel.from_pretrained(source, **kwargs).eval()
            ids, mask = tokenizer.encode_batch(prompts)
            feeds = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if getattr(model.config, "type_vocab_size", 0):
                feeds["token_type_ids"] = torch.zeros_like(feeds["input_ids"])
            hidden = model(**feeds).last_hidden_state.float().numpy()
            ref.outputs = pool(hidden, mask, *encoder_settings)
            bar.advance(len(prompts))
        else:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(source, **kwargs).eval()
            ids, mask = tokenizer.encode_batch(prompts)
            feeds = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if getattr(model.config, "type_vocab_size", 0):
                feeds["token_type_ids"] = torch.zeros_like(feeds["input_ids"])
            ref.outputs = torch.softmax(model(**feeds).logits.double(), dim=-1).numpy()
            bar.advance(len(prompts))
    del model
    return ref


def gate(
    model,
    reference: Reference,
    precision: str,
    thresholds: dict[str, float],
    *,
    label: str = "",
    progress: Progress | None = None,
) -> GateReport:
    """Compare a loaded runtime ``model`` with ``reference``; return the verdict (never raises on failure)."""
    progress = ensure(progress)
    t0 = time.perf_counter()
    kind = reference.kind
    with progress.step(f"gate: {label or precision} artifact", total=len(reference.prompts)) as bar:
        if kind == "decoder":
            art = []
            for ids in reference.token_ids:
                art.append(model.sequence_logits(ids))
                bar.advance()
            metrics = decoder_metrics(reference.outputs, art)
        elif kind == "encoder":
            metrics = encoder_metrics(reference.outputs, model.embed(reference.prompts))
            bar.advance(len(reference.prompts))
        else:
            metrics = classifier_metrics(reference.outputs, model.probabilities(reference.prompts))
            bar.advance(len(reference.prompts))
    failures = judge(kind, metrics, thresholds)
    return GateReport(
        status="failed" if failures else "passed",
        kind=kind,
        precision=precision,
        reference=reference.description,
        metrics=metrics,
        thresholds=thresholds,
        failures=failures,
        n_prompts=len(reference.prompts),
        prompts_sha256=prompts_digest(reference.prompts),
        seconds=round(time.perf_counter() - t0, 3),
    )


def format_gate_line(label: str, report: GateReport) -> str:
    """One progress line for a gate's verdict: ``gate int8: PASSED (kl_mean=0.007, ...; 20 prompts, 3.1s)``."""
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in report.metrics.items())
    return f"gate {label}: {report.status.upper()} ({metrics}; {report.n_prompts} prompts, {report.seconds:.1f}s)"


# Rounding error per extra bit: the squared error of a uniform quantizer falls 4x per bit, and next-token KL
# roughly with it (SmolLM2-135M moved off its 4-bit grid, benchmarks/native_like.py: fused ONNX int4 with
# integer zero points KL 0.43, int8 0.010; 3.4 more bits per weight predict 0.004). An estimate, optimistic by
# about 2x there, to name the precision worth trying next, not a promise.
KL_PER_BIT = 4.0


def higher_precision(report: GateReport) -> str | None:
    """For a failed gate of a quantized decoder: the lowest higher precision of the same format whose KL,
    estimated from this gate's (:data:`KL_PER_BIT`), meets that precision's default bounds."""
    row = quants.get(report.precision or "")
    kl = report.metrics.get("kl_mean")
    if report.kind != "decoder" or row is None or kl is None or not math.isfinite(kl):
        return None
    bounds = DEFAULT_THRESHOLDS["decoder"]
    for q in sorted(quants.rows(row.format, export=True), key=lambda q: q.bpw):
        if q.bpw <= row.bpw or q.name not in bounds:
            continue
        estimate = kl / KL_PER_BIT ** (q.bpw - row.bpw)
        if estimate <= bounds[q.name]["kl_mean"]:
            return f"{q.choice} (its KL estimated at {estimate:.2g} against its bound {bounds[q.name]['kl_mean']:g})"
    return None


def raise_if_failed(report: GateReport, label: str | None = None) -> None:
    """Raise :class:`QualityGateError` (carrying ``report``) when the gate failed; ``label`` names the artifact.
    A failed quantized decoder names the higher precision likely to pass."""
    if report.status == "failed":
        what = f"quality gate failed for the {label} artifact" if label else "quality gate failed"
        higher = higher_precision(report)
        hint = f"; a higher precision would likely pass: {higher}" if higher else ""
        raise QualityGateError(f"{what}: " + "; ".join(report.failures) + hint, report)


def skipped_report(kind: str, prompts: Sequence[str]) -> GateReport:
    return GateReport(status="skipped", kind=kind, reference="none (--no-gate)", n_prompts=0, prompts_sha256=None)
