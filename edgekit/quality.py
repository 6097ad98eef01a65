"""The quality gate: compare an artifact with its reference model on the same inputs.

* decoders: next-token distributions at every position of every prompt, reference
  (transformers, fp32) vs artifact (onnxruntime or llama.cpp) on the same token ids:
  KL(reference || artifact) mean and max, and top-1 agreement;
* encoders: cosine similarity of pooled embeddings, mean and min;
* classifiers: label agreement and the largest absolute difference of a class probability.

Each precision has default thresholds (fp32 near-exact, quantized looser but
strict enough to catch a broken model); any of them can be overridden. A metric
outside its bound fails the gate: the exporter then raises
:class:`~edgekit.errors.QualityGateError` and writes nothing.

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

from edgekit.errors import ConfigError, ExportError, MissingDependencyError
from edgekit.manifest import GateReport
from edgekit.progress import Progress, ensure

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
KIND_METRICS = {
    "decoder": ("kl_mean", "kl_max", "top1"),
    "encoder": ("cos_mean", "cos_min"),
    "classifier": ("label_agreement", "prob_diff_max"),
}

# Default thresholds per precision. fp32 exports are near-exact; quantized ones looser
# but below what a damaged model gives. Measured on SmolLM2-135M (20 built-in prompts):
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
        "q8_0": {"kl_mean": 0.03, "kl_max": 0.5, "top1": 0.9},  # real 0.0073/0.11/0.944; zeroed q 0.072/0.66/0.862
        "int8": {"kl_mean": 0.05, "kl_max": 1.0, "top1": 0.88},
        "q6_k": {"kl_mean": 0.06, "kl_max": 0.6, "top1": 0.87},  # real 0.027/0.25/0.914; zeroed q 0.090/0.71/0.827
        "q5_k_m": {"kl_mean": 0.15, "kl_max": 2.5, "top1": 0.8},  # real 0.111/1.45/0.827; zeroed q 0.175/2.56/0.785
        "q4_k_m": {"kl_mean": 0.12, "kl_max": 2.5, "top1": 0.83},  # real 0.084/1.20/0.853; zeroed q 0.143/0.91/0.813
        "q4_0": {"kl_mean": 0.75, "kl_max": 10.0, "top1": 0.5},  # real 0.60/6.9/0.563 (Q4_1 weights requantized); zeroed down 0.79
        "int4": {"kl_mean": 0.8, "kl_max": 6.0, "top1": 0.55},
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

KIND_OF_TASK = {"text-generation": "decoder", "feature-extraction": "encoder", "text-classification": "classifier"}


def parse_threshold_overrides(items: Sequence[str] | None) -> dict[str, float]:
    """Parse ``metric=value`` strings from the command line."""
    out: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in METRICS:
            raise ConfigError(f"bad --threshold {item!r}: use METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise ConfigError(f"bad --threshold {item!r}: {value!r} is not a number") from exc
        if not math.isfinite(out[name]):
            raise ConfigError(f"bad --threshold {item!r}: the value must be finite")
    return out


def thresholds_for(kind: str, precision: str, overrides: dict[str, float] | None = None) -> dict[str, float]:
    table = DEFAULT_THRESHOLDS[kind]
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
        raise ConfigError(f"prompts file {p} does not exist: pass a text file with one prompt per line")
    try:
        lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"prompts file {p} cannot be read as UTF-8 text: {exc}") from exc
    prompts = [line.replace("\\n", "\n") for line in lines if line]
    if not prompts:
        raise ConfigError(f"prompts file {p} is empty: put one prompt per line")
    return prompts


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
    try:
        return _reference(kind, source, prompts, tokenizer, encoder_settings, allow_pickle, progress)
    except (MemoryError, KeyboardInterrupt):
        raise
    except (ValueError, RuntimeError, OSError, IndexError, KeyError) as exc:  # transformers/torch: translate
        raise ExportError(
            f"the gate's reference model (transformers) failed on {Path(source).name}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
        ) from exc


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
            from edgekit.runtimes.onnx import pool

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


def skipped_report(kind: str, prompts: Sequence[str]) -> GateReport:
    return GateReport(status="skipped", kind=kind, reference="none (--no-gate)", n_prompts=0, prompts_sha256=None)
