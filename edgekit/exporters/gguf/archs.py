"""One small declarative spec per architecture family that the GGUF converter covers.

A spec says which ``model_type`` values it handles, which llama.cpp architecture
(``gguf.MODEL_ARCH``) they become, and the few things that differ between
families: whether q/k projections must be re-ordered for llama.cpp's rotary
embedding, whether norm weights are stored as ``w`` but applied as ``1 + w``
(Gemma), which rope scalings llama.cpp can express, the hyper-parameters
that need more than the common ones, and the configs llama.cpp would run
differently from transformers (refused before anything is written). Tensor names come from gguf-py's own
``TensorNameMap``; nothing here lists HF tensor names by hand.

Why the q/k permutation: Hugging Face Llama checkpoints apply rotary embeddings
"rotate half" style (the first and second halves of each head are the pair),
while llama.cpp's ``llama`` architecture rotates adjacent pairs (Meta's original
layout). The rows of ``q_proj``/``k_proj`` are therefore re-ordered so that row
``h*d + 2i`` holds what HF had at ``h*d + i`` and row ``h*d + 2i + 1`` what it had at
``h*d + d/2 + i``. Families that llama.cpp runs with NEOX rotary (Qwen2, Qwen3,
Gemma, Gemma 3, Phi-3) use the HF layout as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgekit.errors import UnsupportedModelError

# Hugging Face tensors that carry no weights llama.cpp needs.
SKIP_SUFFIXES = ("rotary_emb.inv_freq", "attn.masked_bias", "attn.bias")


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture family maps onto a llama.cpp architecture."""

    name: str
    model_types: tuple[str, ...]
    gguf_arch: str  # a gguf.MODEL_ARCH member name, e.g. "LLAMA"
    permute_qk: bool = False  # HF rotate-half -> llama.cpp adjacent-pair rotary
    norm_plus_one: bool = False  # norm weights applied as (1 + w): store 1 + w
    rope_scalings: tuple[str, ...] = ("none",)  # rope_scaling types llama.cpp can run for this family
    extra_hparams: Callable[[Any, dict[str, Any]], None] | None = None
    check: Callable[[dict[str, Any]], None] | None = None  # raises for configs llama.cpp cannot run as is
    notes: str = ""
    examples: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arch(self):
        import gguf

        return getattr(gguf.MODEL_ARCH, self.gguf_arch)


def _permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Re-order the rows of a q/k projection (or its bias) from HF rotate-half to adjacent pairs."""
    rows = w.shape[0]
    head_dim = rows // n_head
    rest = w.shape[1:]
    return w.reshape(n_head, 2, head_dim // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def _phi3_hparams(writer, cfg: dict[str, Any]) -> None:
    if cfg.get("sliding_window"):
        writer.add_sliding_window(int(cfg["sliding_window"]))


def _gemma3_hparams(writer, cfg: dict[str, Any]) -> None:
    kinds = layer_types(cfg)
    if "sliding_attention" in kinds:  # llama.cpp: local layers are those with il % period < period - 1
        writer.add_sliding_window(int(cfg["sliding_window"]))
        writer.add_sliding_window_pattern(window_period(kinds))
        writer.add_rope_freq_base_swa(float(cfg.get("rope_local_base_freq", 10000.0)))


def _gemma3_check(cfg: dict[str, Any]) -> None:
    """Refuse the Gemma 3 settings llama.cpp's ``gemma3`` architecture does not read (it would run them differently)."""
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if cfg.get(key):
            raise UnsupportedModelError(f"gemma3_text with {key}={cfg[key]}: llama.cpp's gemma3 architecture does not "
                                        "apply it (published Gemma 3 models have none); export it to ONNX instead")
    kinds = layer_types(cfg)
    if "sliding_attention" in kinds and window_period(kinds) is None:
        raise UnsupportedModelError("gemma3_text whose layer_types are not a repeating run of sliding layers closed by "
                                    "one full-attention layer: llama.cpp cannot express that layer pattern")
    s = shape_of(cfg)
    # llama.cpp scales queries by 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 62-layer 27B; it reads no
    # query_pre_attn_scalar (every published Gemma 3 matches that rule)
    expected = s.hidden // s.n_heads if s.n_layers == 62 else s.head_dim
    scalar = cfg.get("query_pre_attn_scalar")
    if scalar and float(scalar) != float(expected):
        raise UnsupportedModelError(f"gemma3_text with query_pre_attn_scalar={scalar}: llama.cpp scales attention by "
                                    f"1/sqrt({expected}) for this shape; export it to ONNX instead")


SPECS: tuple[ArchSpec, ...] = (
    ArchSpec(
        name="llama", model_types=("llama", "mistral"), gguf_arch="LLAMA", permute_qk=True,
        rope_scalings=("none", "linear", "llama3"),
        notes="Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral",
        examples=("SmolLM2-135M", "TinyLlama-1.1B", "Llama-3.2-1B", "Mistral-7B"),
    ),
    ArchSpec(name="qwen2", model_types=("qwen2",), gguf_arch="QWEN2", rope_scalings=("none", "linear"),
             notes="Qwen2, Qwen2.5", examples=("Qwen2.5-0.5B",)),
    ArchSpec(name="qwen3", model_types=("qwen3",), gguf_arch="QWEN3", rope_scalings=("none", "linear"),
             notes="Qwen3 (dense)", examples=("Qwen3-0.6B",)),
    ArchSpec(name="gemma", model_types=("gemma",), gguf_arch="GEMMA", norm_plus_one=True,
             notes="Gemma (first generation)", examples=("gemma-2b",)),
    ArchSpec(name="phi3", model_types=("phi3",), gguf_arch="PHI3", extra_hparams=_phi3_hparams,
             notes="Phi-3 without LongRoPE (the 4k-context models)", examples=("Phi-3-mini-4k-instruct",)),
    ArchSpec(name="gemma3_text", model_types=("gemma3_text",), gguf_arch="GEMMA3", norm_plus_one=True,
             rope_scalings=("none", "linear"), extra_hparams=_gemma3_hparams, check=_gemma3_check,
             notes="Gemma 3 text models (sliding-window and global layers, QK norm)",
             examples=("gemma-3-270m", "gemma-3-1b-it")),
)

BY_MODEL_TYPE: dict[str, ArchSpec] = {t: s for s in SPECS for t in s.model_types}


def supported_model_types() -> list[str]:
    return sorted(BY_MODEL_TYPE)


def spec_for(config: dict[str, Any]) -> ArchSpec:
    """The spec for a transformers config, or :class:`UnsupportedModelError` naming the supported types."""
    model_type = str(config.get("model_type", ""))
    spec = BY_MODEL_TYPE.get(model_type)
    if spec is None:
        raise UnsupportedModelError(
            f"model type {model_type!r} cannot be converted to GGUF by edgekit; supported: "
            f"{', '.join(supported_model_types())} "
            "(or pass llama_cpp_converter=PATH to llama.cpp's convert_hf_to_gguf.py)",
            param="llama_cpp_converter",
        )
    archs = [str(a) for a in config.get("architectures") or []]
    if archs and not any(a.endswith("ForCausalLM") for a in archs):
        raise UnsupportedModelError(
            f"{model_type} checkpoint with architectures {archs}: GGUF export needs a causal LM (…ForCausalLM)"
        )
    rope_type = rope_scaling_type(config)
    if rope_type not in spec.rope_scalings:
        raise UnsupportedModelError(
            f"{model_type} with rope_scaling type {rope_type!r} is not supported by edgekit's GGUF converter; "
            f"supported for {spec.name}: {', '.join(spec.rope_scalings)}"
        )
    if spec.check is not None:
        spec.check(config)
    return spec


def rope_scaling_type(config: dict[str, Any]) -> str:
    rs = config.get("rope_scaling")
    if not rs:
        return "none"
    kind = str(rs.get("rope_type") or rs.get("type") or "none")
    return "none" if kind == "default" else kind


def layer_types(cfg: dict[str, Any]) -> list[str]:
    """Each layer's attention, as transformers decides it: ``sliding_attention`` or ``full_attention``.

    ``layer_types`` when the config lists them; else Gemma 3's older ``sliding_window_pattern`` (every
    pattern-th layer global, default 6), Qwen2/Qwen3's ``max_window_layers`` (layers from there on slide, when
    ``use_sliding_window``), or one kind for all layers (Mistral, Phi-3: ``sliding_window`` set or not).
    """
    n = _int(cfg, "num_hidden_layers")
    kinds = cfg.get("layer_types")
    if kinds:
        if len(kinds) != n:
            raise UnsupportedModelError(f"config.json lists {len(kinds)} layer_types for {n} layers")
        return [str(k) for k in kinds]
    if not cfg.get("sliding_window") or cfg.get("use_sliding_window") is False:
        return ["full_attention"] * n
    if cfg.get("model_type") == "gemma3_text":
        period = int(cfg.get("sliding_window_pattern") or 6)
        return ["sliding_attention" if (i + 1) % period else "full_attention" for i in range(n)]
    if "max_window_layers" in cfg:
        first = int(cfg["max_window_layers"])
        return ["sliding_attention" if i >= first else "full_attention" for i in range(n)]
    return ["sliding_attention"] * n


def window_period(kinds: list[str]) -> int | None:
    """p when every p-th layer is global and the others slide (llama.cpp's ``sliding_window_pattern``), else None."""
    globals_ = [i for i, k in enumerate(kinds) if k != "sliding_attention"]
    period = globals_[0] + 1 if globals_ else len(kinds) + 1
    want = ["sliding_attention" if (i + 1) % period else "full_attention" for i in range(len(kinds))]
    return period if want == kinds else None


# ---------------------------------------------------------------- hyper-parameters


def _int(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for k in keys:
        if isinstance(cfg.get(k), int):
            return int(cfg[k])
    if default is not None:
        return default
    raise UnsupportedModelError(f"config.json lacks {keys[0]}: cannot convert this model to GGUF")


@dataclass(frozen=True)
class Shape:
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    context: int
    rope_dims: int


def shape_of(cfg: dict[str, Any]) -> Shape:
    hidden = _int(cfg, "hidden_size")
    heads = _int(cfg, "num_attention_heads")
    head_dim = _int(cfg, "head_dim", default=hidden // heads)
    rotary = float(cfg.get("partial_rotary_factor") or 1.0)
    return Shape(
        n_layers=_int(cfg, "num_hidden_layers"),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=_int(cfg, "num_key_value_heads", default=heads),
        head_dim=head_dim,
        ffn=_int(cfg, "intermediate_size"),
        context=_int(cfg, "max_position_embeddings", default=2048),
        rope_dims=int(head_dim * rotary),
    )


def write_hparams(writer, spec: ArchSpec, cfg: dict[str, Any], vocab_size: int) -> Shape:
    """Write the architecture's hyper-parameters to a ``gguf.GGUFWriter``."""
    import gguf

    s = shape_of(cfg)
    writer.add_context_length(s.context)
    writer.add_embedding_length(s.hidden)
    writer.add_block_count(s.n_layers)
    writer.add_feed_forward_length(s.ffn)
    writer.add_head_count(s.n_heads)
    writer.add_head_count_kv(s.n_kv_heads)
    writer.add_rope_dimension_count(s.rope_dims)
    writer.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(vocab_size)
    if s.head_dim * s.n_heads != s.hidden:
        writer.add_key_length(s.head_dim)
        writer.add_value_length(s.head_dim)
    kind = rope_scaling_type(cfg)
    if kind == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(cfg["rope_scaling"]["factor"]))
    if spec.extra_hparams is not None:
        spec.extra_hparams(writer, cfg)
    return s


def llama3_rope_factors(cfg: dict[str, Any], shape: Shape) -> np.ndarray | None:
    """The per-frequency divisors llama.cpp applies for Llama 3.1+ ``rope_type: llama3`` (tensor ``rope_freqs``).

    Llama 3 keeps high frequencies, divides low frequencies by ``factor`` and blends
    in between; llama.cpp reads the resulting divisor for each rotary pair.
    """
    if rope_scaling_type(cfg) != "llama3":
        return None
    rs = cfg["rope_scaling"]
    base = float(cfg.get("rope_theta", 10000.0))
    factor = float(rs.get("factor", 8.0))
    low, high = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    dims = shape.rope_dims
    out = np.empty(dims // 2, dtype=np.float32)
    for i in range(dims // 2):
        freq = 1.0 / base ** (2 * i / dims)
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out[i] = 1.0
        elif wavelen > low_wavelen:
            out[i] = factor
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out[i] = 1.0 / ((1 - smooth) / factor + smooth)
    return out


# ---------------------------------------------------------------- tensors


def tensor_transform(spec: ArchSpec, gguf_name: str, shape: Shape) -> Callable[[np.ndarray], np.ndarray] | None:
    """The layout change llama.cpp expects for one tensor (None: copy as is)."""
    if spec.permute_qk and gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
        return lambda w: _permute_rows(w, shape.n_heads)
    if spec.permute_qk and gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
        return lambda w: _permute_rows(w, shape.n_kv_heads)
    if spec.norm_plus_one and gguf_name.endswith("norm.weight"):
        return lambda w: w + np.asarray(1.0, dtype=w.dtype)
    return None
