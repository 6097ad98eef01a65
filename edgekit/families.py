"""One row per model family (a transformers ``model_type``): what both exporters, the CLI help and the tests read.

A :class:`Family` says which llama.cpp architecture (``gguf.MODEL_ARCH``) the family becomes, and the
few things that differ between families:

* ``permute_qk``: Hugging Face Llama checkpoints apply rotary embeddings "rotate half" style (the first
  and second halves of each head are the pair), while llama.cpp's ``llama`` architecture rotates adjacent
  pairs (Meta's original layout), so the GGUF converter re-orders the rows of ``q_proj``/``k_proj``.
  Families that llama.cpp runs with NEOX rotary (Qwen2, Qwen3, Gemma, Gemma 3, Phi-3) keep the HF layout;
  the fused ONNX graph always rotates the HF way.
* ``norm_plus_one``: norm weights stored as ``w`` but applied as ``1 + w`` (Gemma); ``embed_scale``:
  embeddings multiplied by sqrt(hidden_size) (Gemma);
* ``act_keys``: the config keys naming the MLP activation (first present wins);
* ``tied_default``: whether the output layer is the embedding when the config does not say;
* ``rope_gguf`` / ``rope_onnx``: the rope scalings each exporter can express for the family, stated
  apart (that llama.cpp runs one does not make the fused graph run it);
* ``gguf_check`` / ``onnx_check``: configs an exporter would run differently from transformers
  (refused before anything is written); ``gguf_hparams``: hyper-parameters beyond the common ones;
* ``tensor_names``: Hugging Face tensor names gguf-py's ``TensorNameMap`` lacks for the architecture
  (``{bid}`` for the layer number), mapped to llama.cpp's names. The known families need none: gguf-py's
  table says where each Hugging Face tensor goes, for both exporters.

Adding a family is one row here (plus its tensor names when gguf-py lacks them). :func:`read_shape` /
:func:`shape_of` are the one reading of a config's shape (manifest, optimize, both exporters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgekit.errors import UnsupportedModelError

# Hugging Face tensors that carry no weights either exporter needs.
SKIP_SUFFIXES = ("rotary_emb.inv_freq", "attn.masked_bias", "attn.bias")


@dataclass(frozen=True)
class Family:
    """One transformers ``model_type`` and how both exporters treat it."""

    model_type: str
    gguf_arch: str  # a gguf.MODEL_ARCH member name, e.g. "LLAMA"
    permute_qk: bool = False
    norm_plus_one: bool = False
    embed_scale: bool = False
    act_keys: tuple[str, ...] = ("hidden_act",)
    tied_default: bool = False
    rope_gguf: tuple[str, ...] = ("none",)
    rope_onnx: tuple[str, ...] = ("none",)
    gguf_check: Callable[[dict[str, Any]], None] | None = None
    onnx_check: Callable[[dict[str, Any]], None] | None = None
    gguf_hparams: Callable[[Any, dict[str, Any]], None] | None = None
    tensor_names: tuple[tuple[str, str], ...] = ()  # (HF name with {bid}, llama.cpp name with {bid}), no suffix
    genai_type: str = ""  # onnxruntime-genai's model type (default: model_type)
    notes: str = ""
    examples: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.model_type

    @property
    def genai(self) -> str:
        return self.genai_type or self.model_type

    @property
    def arch(self):
        """The ``gguf.MODEL_ARCH`` member (imports gguf-py)."""
        import gguf

        return getattr(gguf.MODEL_ARCH, self.gguf_arch)

    def rope(self, exporter: str) -> tuple[str, ...]:
        return {"gguf": self.rope_gguf, "onnx": self.rope_onnx}[exporter]

    def is_tied(self, cfg: dict[str, Any]) -> bool:
        return bool(cfg.get("tie_word_embeddings", self.tied_default))


# ---------------------------------------------------------------- family-specific pieces


def _phi3_hparams(writer, cfg: dict[str, Any]) -> None:
    if cfg.get("sliding_window"):
        writer.add_sliding_window(int(cfg["sliding_window"]))


def _gemma3_hparams(writer, cfg: dict[str, Any]) -> None:
    kinds = layer_types(cfg)
    if "sliding_attention" in kinds:  # llama.cpp: local layers are those with il % period < period - 1
        writer.add_sliding_window(int(cfg["sliding_window"]))
        writer.add_sliding_window_pattern(window_period(kinds))
        writer.add_rope_freq_base_swa(float(cfg.get("rope_local_base_freq", 10000.0)))


def _gemma3_gguf_check(cfg: dict[str, Any]) -> None:
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


# ---------------------------------------------------------------- the rows

_LLAMA_ROPE = ("none", "linear", "llama3")
_LINEAR_ROPE = ("none", "linear")

ROWS: tuple[Family, ...] = (
    Family("llama", "LLAMA", permute_qk=True, rope_gguf=_LLAMA_ROPE, rope_onnx=_LLAMA_ROPE,
           notes="Llama 2/3, SmolLM/SmolLM2, TinyLlama", examples=("SmolLM2-135M", "TinyLlama-1.1B", "Llama-3.2-1B")),
    Family("mistral", "LLAMA", permute_qk=True, rope_gguf=_LLAMA_ROPE, rope_onnx=_LLAMA_ROPE,
           notes="Mistral (llama.cpp's llama architecture)", examples=("Mistral-7B",)),
    Family("qwen2", "QWEN2", rope_gguf=_LINEAR_ROPE, rope_onnx=_LINEAR_ROPE,
           notes="Qwen2, Qwen2.5", examples=("Qwen2.5-0.5B",)),
    Family("qwen3", "QWEN3", rope_gguf=_LINEAR_ROPE, rope_onnx=_LINEAR_ROPE,
           notes="Qwen3 (dense)", examples=("Qwen3-0.6B",)),
    Family("gemma", "GEMMA", norm_plus_one=True, embed_scale=True, tied_default=True,
           notes="Gemma (first generation)", examples=("gemma-2b",)),
    Family("phi3", "PHI3", gguf_hparams=_phi3_hparams,  # LongRoPE: neither exporter has it
           notes="Phi-3 without LongRoPE (the 4k-context models)", examples=("Phi-3-mini-4k-instruct",)),
    Family("gemma3_text", "GEMMA3", norm_plus_one=True, embed_scale=True, tied_default=True,
           act_keys=("hidden_activation", "hidden_act"), rope_gguf=_LINEAR_ROPE, rope_onnx=_LINEAR_ROPE,
           gguf_check=_gemma3_gguf_check, gguf_hparams=_gemma3_hparams,
           notes="Gemma 3 text models (sliding-window and global layers, QK norm)",
           examples=("gemma-3-270m", "gemma-3-1b-it")),
)

FAMILIES: dict[str, Family] = {f.model_type: f for f in ROWS}


def model_types(exporter: str | None = None) -> list[str]:
    """The covered ``model_type`` values (of one exporter: those it has a rope scaling for)."""
    return sorted(t for t, f in FAMILIES.items() if exporter is None or f.rope(exporter))


def help_list(exporter: str | None = None) -> str:
    """The covered model types for help text and errors: "gemma, gemma3_text, llama, ..."."""
    return ", ".join(model_types(exporter))


def tied_embeddings(cfg: dict[str, Any]) -> bool:
    """Whether the output layer is the token embedding: the config's ``tie_word_embeddings``, else the family's
    default (transformers' ``PretrainedConfig`` default, True, for a family without a row)."""
    family = FAMILIES.get(str(text_config(cfg).get("model_type") or cfg.get("model_type", "")))
    if family is not None:
        return family.is_tied(cfg)
    return bool(cfg.get("tie_word_embeddings", True))


def markdown_table() -> str:
    """The rows as the Markdown table README.md ("Model families") shows; a test keeps the two the same."""
    def rope(r: tuple[str, ...]) -> str:
        return ", ".join(r) if r else "not built"

    lines = ["| model_type | covers | GGUF (llama.cpp arch; rope scalings) | fused ONNX (rope scalings) |",
             "|---|---|---|---|"]
    for f in FAMILIES.values():
        lines.append(f"| {f.model_type} | {f.notes} | {f.gguf_arch.lower()}; {rope(f.rope_gguf)} "
                     f"| {rope(f.rope_onnx)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the checks

_WHO = {"gguf": "edgekit's GGUF converter", "onnx": "the fused ONNX builder"}
_UNKNOWN = {
    "gguf": "model type {t!r} cannot be converted to GGUF by edgekit; supported: {types} "
            "(or pass llama_cpp_converter=PATH to llama.cpp's convert_hf_to_gguf.py)",
    "onnx": "model type {t!r} has no fused ONNX decoder builder; covered: {types} (export it with via='optimum')",
}
_INSTEAD = {"gguf": "or pass llama_cpp_converter=PATH to llama.cpp's convert_hf_to_gguf.py",
            "onnx": "export it with via='optimum'"}
_PARAM = {"gguf": "llama_cpp_converter", "onnx": "via"}


def refusal(exporter: str, model_type: str, why: str) -> UnsupportedModelError:
    """The error for a config ``exporter`` cannot build: what it is, who lacks it, what to use instead."""
    return UnsupportedModelError(f"{model_type} {why}: {_WHO[exporter]} does not cover it ({_INSTEAD[exporter]})",
                                 param=_PARAM[exporter])


def family_for(config: dict[str, Any], exporter: str) -> Family:
    """The family of a transformers config that ``exporter`` ("gguf" or "onnx") can build, else
    :class:`UnsupportedModelError` saying why (unknown type, not a causal LM, rope scaling, family checks)."""
    model_type = str(config.get("model_type", ""))
    family = FAMILIES.get(model_type)
    if family is None or not family.rope(exporter):
        raise UnsupportedModelError(_UNKNOWN[exporter].format(t=model_type, types=help_list(exporter)),
                                    param=_PARAM[exporter])
    names = [str(a) for a in config.get("architectures") or []]
    if names and not any(a.endswith("ForCausalLM") for a in names):
        raise refusal(exporter, model_type, f"checkpoint with architectures {names} is not a causal LM (…ForCausalLM)")
    rope = rope_scaling_type(config)
    if rope not in family.rope(exporter):
        raise refusal(exporter, model_type,
                      f"with rope_scaling type {rope!r} (covered: {', '.join(family.rope(exporter))})")
    check = {"gguf": family.gguf_check, "onnx": family.onnx_check}[exporter]
    if check is not None:
        check(config)
    return family


# ---------------------------------------------------------------- tensor names


class TensorNames:
    """Hugging Face tensor name -> llama.cpp name (``blk.3.attn_q.weight``), from gguf-py's map and the row's own."""

    def __init__(self, family: Family, n_layers: int):
        import gguf

        self._map = gguf.get_tensor_name_map(family.arch, n_layers)
        self._own = {hf.format(bid=i): name.format(bid=i)
                     for hf, name in family.tensor_names for i in range(n_layers)} if family.tensor_names else {}

    def get(self, hf_name: str) -> str | None:
        for suffix in (".weight", ".bias"):
            if hf_name.endswith(suffix) and hf_name[: -len(suffix)] in self._own:
                return self._own[hf_name[: -len(suffix)]] + suffix
        return self._map.get_name(hf_name, try_suffixes=(".weight", ".bias"))


# ---------------------------------------------------------------- rope and layers


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
    n = read_shape(cfg).n_layers
    if n is None:
        raise UnsupportedModelError("config.json lacks num_hidden_layers: cannot export this model")
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


def llama3_rope_factors(cfg: dict[str, Any], shape: Shape) -> np.ndarray | None:
    """The per-frequency divisors of Llama 3.1+ ``rope_type: llama3`` (llama.cpp's tensor ``rope_freqs``).

    Llama 3 keeps high frequencies, divides low frequencies by ``factor`` and blends in between; llama.cpp
    reads the resulting divisor for each rotary pair, the fused graph divides its inverse frequencies by it.
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


# ---------------------------------------------------------------- the shape of a config

# Each shape fact and the config keys that may hold it, first present wins (transformers' names first, then
# GPT-2's, T5's and others' older spellings).
SHAPE_KEYS: dict[str, tuple[str, ...]] = {
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model", "dim"),
    "n_heads": ("num_attention_heads", "n_head", "n_heads"),
    "n_kv_heads": ("num_key_value_heads", "n_kv_heads"),
    "head_dim": ("head_dim",),
    "ffn": ("intermediate_size", "n_inner", "d_ff"),
    "context": ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"),
    "vocab": ("vocab_size",),
}


@dataclass(frozen=True)
class ConfigShape:
    """What a config says of the model's shape; None where it says nothing (derived: kv heads, head_dim)."""

    n_layers: int | None
    hidden: int | None
    n_heads: int | None
    n_kv_heads: int | None
    head_dim: int | None
    ffn: int | None
    context: int | None
    vocab: int | None
    rotary_factor: float


@dataclass(frozen=True)
class Shape:
    """A decoder's shape, every fact present (see :func:`shape_of`)."""

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    context: int
    rope_dims: int


def text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The decoder's part of a config: a multimodal config's ``text_config`` over its top level."""
    sub = cfg.get("text_config")
    return {**cfg, **sub} if isinstance(sub, dict) else cfg


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_shape(cfg: dict[str, Any]) -> ConfigShape:
    """The one reading of a config's shape (``text_config`` first for multimodal configs); never raises."""
    cfg = text_config(cfg)
    got: dict[str, int | None] = {}
    for fact, keys in SHAPE_KEYS.items():
        got[fact] = next((v for v in (_positive(cfg.get(k)) for k in keys) if v is not None), None)
    hidden, heads = got["hidden"], got["n_heads"]
    got["n_kv_heads"] = got["n_kv_heads"] or heads
    got["head_dim"] = got["head_dim"] or (hidden // heads if hidden and heads else None)
    rotary = cfg.get("partial_rotary_factor")
    return ConfigShape(**got, rotary_factor=float(rotary) if isinstance(rotary, (int, float)) and rotary else 1.0)


def shape_of(cfg: dict[str, Any], default_context: int = 2048) -> Shape:
    """A decoder's full shape, or :class:`UnsupportedModelError` naming the first key the config lacks."""
    s = read_shape(cfg)
    for fact in ("hidden", "n_heads", "n_layers", "ffn"):
        if getattr(s, fact) is None:
            raise UnsupportedModelError(f"config.json lacks {SHAPE_KEYS[fact][0]}: cannot export this model")
    return Shape(n_layers=s.n_layers, hidden=s.hidden, n_heads=s.n_heads, n_kv_heads=s.n_kv_heads,
                 head_dim=s.head_dim, ffn=s.ffn, context=s.context or default_context,
                 rope_dims=int(s.head_dim * s.rotary_factor))
