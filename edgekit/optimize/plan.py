"""The candidates of an optimize run and what prediction alone says about each, before any export.

Candidates are formats x quantization types (rows of :mod:`edgekit.quants`) x the export
knobs that matter. Today the exporters expose no knob worth searching: ``export_onnx`` takes
no int4 block size or rounding algorithm (block 32 and the fused builder's activation-weighted
grid search are fixed), so a candidate's knobs are empty and its threads are the target's (a
runtime setting, not an export one). A knob added to an exporter becomes one more key in
``knobs``, which is part of the cache key.

Each candidate gets a shape from the source's config alone (parameter count x the type's
bits per weight, KV cache at the context: :func:`edgekit.profiler.shape.shape_from_params`)
and, when this machine holds a calibration of its runtime, a roofline prediction for the
target. Pruning on these estimates is deliberately conservative, since pruning a candidate that
would have met the constraints gives a wrong answer, while exporting one that then misses
costs only time: size and memory must exceed their limit by :data:`SIZE_MARGIN`, the decode
speed fall short by :data:`SPEED_MARGIN` (the roofline's published-device errors reach 35%).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgekit import quants
from edgekit.errors import ConfigError, SourceError, UnsupportedModelError
from edgekit.families import read_shape, tied_embeddings
from edgekit.fileio import sha256_files
from edgekit.names import BACKEND_OF_FORMAT, FORMATS
from edgekit.optimize.schema import CandidateRecord, Constraints, PlanEstimate
from edgekit.profiler.roofline import Calibration, predict
from edgekit.profiler.shape import shape_from_params
from edgekit.sources import ResolvedSource, count_params, infer_task
from edgekit.targets.profile import TargetProfile
from edgekit.version import __version__

# The default candidates, per format, from high to low bits. GGUF: f16 is the near-lossless anchor
# (a top-1 floor of 0.95 or more leaves little else), then llama.cpp's usual quantizations down to
# q4_0. ONNX: the fused decoder's int8 and int4. ONNX fp32 (4 bytes a weight) and fp16 (no fp16
# kernels for most of onnxruntime's CPU operators) are left out: f16 GGUF covers the lossless need at
# half the size; ``quants=["fp32"]`` (or "all") asks for them.
DEFAULT_QUANTS = {"gguf": ("f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"), "onnx": ("int8", "int4")}
SIZE_MARGIN = 0.10  # a predicted size or memory is pruned only above limit x 1.10
SPEED_MARGIN = 0.25  # a predicted decode speed is pruned only below minimum / 1.25
MAX_CONTEXT = 4096  # the default context (the model's, at most this): as edgekit predict and package use
SOURCE_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")  # config and tokenizer files: part of the key


@dataclass(frozen=True)
class SourceFacts:
    """What the plan needs of the source model, from its config and safetensors headers."""

    n_params: int
    layers: int | None
    heads: int | None
    kv_heads: int | None
    head_dim: int | None
    context: int
    embedding_params: int  # vocabulary x hidden size
    tied: bool
    digest: str  # the source's content: weights, config and tokenizer files
    hidden: int | None = None
    ffn: int | None = None


def source_facts(src: ResolvedSource, context: int | None) -> SourceFacts:
    """The shape facts and content digest of a resolved decoder source."""
    try:
        task = infer_task(src.config)
    except UnsupportedModelError:
        task = None
    if task != "text-generation":
        raise UnsupportedModelError(f"{src.path.name} is a {task or 'non-decoder'} model: optimize chooses between "
                                    "GGUF and ONNX decoders (text-generation); export encoders with export_onnx",
                                    param="source")
    if src.pickle_weights:
        raise SourceError(f"{src.path.name} has pickle weights: optimize reads safetensors only", param="source")
    shape = read_shape(src.config)
    model_ctx = shape.context or MAX_CONTEXT
    if context is not None and (not isinstance(context, int) or isinstance(context, bool) or context < 2):
        raise ConfigError(f"context must be an integer >= 2, got {context!r}", param="context")
    vocab = shape.vocab or 0
    small = sorted(p for p in src.path.iterdir() if p.is_file() and p.suffix in SOURCE_SUFFIXES
                   and not p.name.startswith("."))
    digest = hashlib.sha256((src.info.weights_sha256 + sha256_files(small)).encode()).hexdigest()
    return SourceFacts(
        n_params=count_params(src.weight_files), layers=shape.n_layers, heads=shape.n_heads,
        kv_heads=shape.n_kv_heads, head_dim=shape.head_dim,
        context=context or min(model_ctx, MAX_CONTEXT), embedding_params=vocab * (shape.hidden or 0),
        tied=tied_embeddings(src.config), digest=digest, hidden=shape.hidden, ffn=shape.ffn,
    )


# ---- which candidates -------------------------------------------------------------------

def _names(value, what: str, param: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"{param} must be {what} names, got {item!r}", param=param)
        out += [s.strip().lower() for s in item.split(",") if s.strip()]
    return out


def select(formats=None, quant_names=None) -> list[quants.Quant]:
    """The quantization rows to try, each format's from high to low effective bits per weight.

    ``formats``: "gguf", "onnx" (default both); ``quant_names``: names of either format ("q4_k_m", "int8";
    ONNX's fp32 is also "none"), or "all" for every type an exporter makes; default :data:`DEFAULT_QUANTS`.
    """
    fmts = _names(formats, "format", "formats") or list(FORMATS[::-1])  # gguf first: its exports are the quicker
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown format {bad[0]!r} in formats=: use gguf, onnx or both", param="formats")
    fmts = list(dict.fromkeys(fmts))
    wanted = _names(quant_names, "quantization", "quants")
    rows: list[quants.Quant] = []
    if not wanted:
        rows = [quants.export_quant(f, q) for f in fmts for q in DEFAULT_QUANTS[f]]
    elif "all" in wanted:
        if set(wanted) != {"all"}:
            raise ConfigError("quants= names 'all' with other types: pass all alone, or only the types to try",
                              param="quants")
        rows = [q for f in fmts for q in quants.rows(f, export=True)]
    else:
        for name in dict.fromkeys(wanted):
            row = next((q for q in quants.rows(export=True) if name in (q.name, q.choice)), None)
            if row is None:
                known = ", ".join(q.name for f in FORMATS for q in quants.rows(f, export=True))
                raise ConfigError(f"unknown quantization {name!r} in quants=: use {known}, or all", param="quants")
            if row.format not in fmts:
                raise ConfigError(f"quants= names {name}, a {row.format} type, but formats= leaves {row.format} out",
                                  param=("quants", "formats"))
            rows.append(row)
    order = {f: i for i, f in enumerate(fmts)}
    return sorted(rows, key=lambda q: (order[q.format], -q.bpw, -q.bits))


_PACKAGE = Path(__file__).resolve().parents[1]  # edgekit/
# What makes an artifact and judges it: a change to any of these files is a new export, also between releases
# (a development checkout changes them without a new version number).
EXPORT_CODE = ("exporters", "quality.py", "quants.py", "sources.py", "manifest.py", "families.py", "safetensors_io.py",
               "pooling.py", "translate.py", "gguf_header.py")


@functools.lru_cache(maxsize=1)
def export_code_digest() -> str:
    """sha256 of the exporting and gating code, taken once per process (the code this process runs)."""
    files = sorted(p for name in EXPORT_CODE for p in ((_PACKAGE / name).rglob("*.py") if (_PACKAGE / name).is_dir()
                                                      else [_PACKAGE / name]) if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(_PACKAGE).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def cache_key(facts: SourceFacts, q: quants.Quant, knobs: dict, prompts_sha256: str, code: str = "") -> str:
    """The key of one candidate's export and gate: source content, format, quant, knobs, prompts, edgekit version
    and the digest of the code that exports and gates (:func:`export_code_digest`)."""
    blob = json.dumps({"source": facts.digest, "format": q.format, "quant": q.name, "knobs": knobs,
                       "prompts": prompts_sha256, "edgekit": __version__, "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# ---- what prediction says ---------------------------------------------------------------

def plan_shape(facts: SourceFacts, quant: str):
    embed = facts.embedding_params if 0 < facts.embedding_params < facts.n_params else 0
    return shape_from_params(
        facts.n_params, quant, layers=facts.layers, kv_heads=facts.kv_heads, head_dim=facts.head_dim,
        heads=facts.heads, context=facts.context, untied_embedding_params=0 if facts.tied else embed,
        output_params=embed, hidden=facts.hidden, ffn=facts.ffn,
    )


def estimate(facts: SourceFacts, q: quants.Quant, target: TargetProfile, cal: Calibration | None, threads: int,
             prompt_tokens: int, gen_tokens: int) -> PlanEstimate:
    """Size, memory and (with a calibration of the runtime) speed of ``q`` on ``target``, from the source's shape."""
    shape = plan_shape(facts, q.name)
    if cal is None or cal.backend != BACKEND_OF_FORMAT[q.format]:
        return PlanEstimate(size_bytes=shape.weight_bytes,
                            memory_bytes=shape.weight_bytes + shape.kv_bytes(facts.context))
    p = predict(shape, target, cal, threads=threads, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                context=facts.context)
    return PlanEstimate(size_bytes=shape.weight_bytes, memory_bytes=p.memory_bytes, memory_has_runtime=True,
                        decode_tps=p.decode_tps, prefill_tps=p.prefill_tps, calibrated_on=p.calibrated_on)


def mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:,.0f} MB"


def prune_by_prediction(c: CandidateRecord, cons: Constraints, target: TargetProfile) -> tuple[str, str] | None:
    """(reason code, reason) when the plan's estimate already rules ``c`` out, else None."""
    e = c.plan
    budget = target.app_ram_budget_gb.value * 1e9
    if cons.max_size_mb is not None and e.size_bytes > cons.max_size_mb * 1e6 * (1 + SIZE_MARGIN):
        return "max_size", (f"predicted size {mb(e.size_bytes)} exceeds the {cons.max_size_mb:g} MB limit "
                            f"(by more than the {SIZE_MARGIN:.0%} margin)")
    if e.memory_bytes > budget * (1 + SIZE_MARGIN):
        what = "weights + KV cache + runtime" if e.memory_has_runtime else "weights + KV cache alone"
        return "ram", (f"predicted memory {mb(e.memory_bytes)} ({what}) exceeds {target.name}'s app RAM budget "
                       f"{mb(budget)}")
    if cons.min_decode is not None and e.decode_tps is not None and e.decode_tps < cons.min_decode / (1 + SPEED_MARGIN):
        return "min_decode", (f"predicted decode {e.decode_tps:.1f} tok/s on {target.name} cannot reach the minimum "
                              f"{cons.min_decode:g} tok/s (even with a {SPEED_MARGIN:.0%} margin)")
    return None


# Quality is pruned as monotone in the bits a file really has only where a higher-bit candidate misses the floor
# by more than these margins. Neighbouring types invert on SmolLM2-135M (quality.py's measurements): q4_k_m
# (5.99 effective bits) top-1 0.853, KL 0.084 against q5_k_m (6.44) 0.827, 0.111; an inversion of 0.026 top-1
# and 1.32x KL, which a margin of about 1.5 times that covers.
TOP1_MARGIN = 0.04
KL_MARGIN = 1.5


def clear_miss(c: CandidateRecord, cons: Constraints) -> bool:
    """Whether ``c``'s gate misses the quality floor by more than the margins (then fewer bits will miss it too)."""
    top1, kl = c.metric("top1"), c.metric("kl_mean")
    if cons.min_top1 is not None and top1 is not None and top1 < cons.min_top1 - TOP1_MARGIN:
        return True
    return cons.max_kl is not None and kl is not None and kl > cons.max_kl * KL_MARGIN


def file_bpw(c: CandidateRecord, facts: SourceFacts) -> float:
    """The effective bits per weight of ``c``'s file as the plan predicts it (llama.cpp's fallbacks included)."""
    return round(c.plan.size_bytes * 8 / facts.n_params, 3) if facts.n_params else c.bpw


def monotone_reason(c: CandidateRecord, higher: CandidateRecord, floor: str) -> str:
    return (f"{c.quant} has fewer effective bits ({c.bpw:.2f}) than {higher.quant} ({higher.bpw:.2f}), which misses "
            f"the {floor} by more than the margin (top-1 {TOP1_MARGIN:g}, KL x{KL_MARGIN:g})")


def floor_text(cons: Constraints) -> str:
    parts = []
    if cons.min_top1 is not None:
        parts.append(f"top-1 floor {cons.min_top1:g}")
    if cons.max_kl is not None:
        parts.append(f"KL ceiling {cons.max_kl:g}")
    return " and ".join(parts)


def source_label(source) -> str:
    text = str(source)
    return text if text.startswith("packaged:") else Path(text).expanduser().name or text
