"""What the fused ONNX builder needs per family beyond the registry (:mod:`edgekit.families`).

The families, their rope scalings (``rope_onnx``), norm offset, embedding scale and activation keys are
rows of :mod:`edgekit.families`; every checkpoint tensor is mapped to its llama.cpp name
(``blk.3.attn_q.weight``) through :class:`edgekit.families.TensorNames` (gguf-py's table), the same
names the GGUF converter writes. Layout facts (a packed ``qkv`` or ``gate_up`` tensor, q/k/v
biases, per-head q/k norms, Gemma 3's norms after attention and after the MLP)
are read from which tensors the checkpoint has; per-layer facts (sliding-window
or global attention, the rope base of each) from the config. Here: the builder's own refusals,
its activations, and the rope tables and attention settings it derives from the config.

What each family needs beyond Llama's graph:

* qwen2: q/k/v biases; qwen3: per-head RMSNorm of q and k before the rotary
  (explicit SimplifiedLayerNormalization on the heads: onnxruntime's
  GroupQueryAttention has no q/k norm on CPU);
* gemma: (1 + w) norms, embeddings times sqrt(hidden), GELU (tanh) MLP, head_dim
  from the config;
* phi3: packed qkv_proj and gate_up_proj (LongRoPE refused);
* gemma3_text: gemma's plus q/k norms, norms after attention and after the MLP,
  sliding-window layers (GroupQueryAttention's ``local_window_size``) with their
  own rope base (a second cos/sin cache) between global layers,
  ``query_pre_attn_scalar`` and the final logit softcapping.
"""

from __future__ import annotations

import math
from typing import Any

from edgekit import families
from edgekit.errors import UnsupportedModelError
from edgekit.families import Family, Shape, layer_types, llama3_rope_factors, rope_scaling_type

# transformers' ACT2FN names -> the graph's activation
ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
               "gelu_fast": "gelu_tanh", "gelu": "gelu"}


def covered_model_types() -> list[str]:
    return families.model_types("onnx")


def covers(config: dict[str, Any]) -> bool:
    """True when the fused builder can build this transformers config (a causal LM of a covered family)."""
    try:
        fused_spec_for(config)
    except UnsupportedModelError:
        return False
    return True


def fused_spec_for(config: dict[str, Any]) -> Family:
    """The family of a transformers config, or :class:`UnsupportedModelError` saying what the builder lacks."""
    family = families.family_for(config, "onnx")
    for key in ("attn_logit_softcapping", "use_bidirectional_attention"):  # the graph has neither
        if config.get(key):
            raise families.refusal("onnx", family.model_type, f"with {key}={config[key]}")
    activation(config, family)
    return family


def activation(config: dict[str, Any], spec: Family) -> str:
    """The MLP activation: silu, gelu_tanh or gelu (transformers' ACT2FN name under the family's config key)."""
    name = next((config[k] for k in spec.act_keys if config.get(k)), "silu")
    if name not in ACTIVATIONS:
        raise UnsupportedModelError(f"{spec.name} with activation {name!r}: the fused ONNX builder has "
                                    f"{', '.join(sorted(ACTIVATIONS))} (export it with via='optimum')", param="via")
    return ACTIVATIONS[name]


def rope_tables(config: dict[str, Any], shape: Shape, positions: int, *, local: bool = False):
    """cos/sin caches for GroupQueryAttention: (positions, rope_dims/2) each, float32 (rotate-half layout).

    ``local``: the sliding-window layers' own tables (Gemma 3's ``rope_local_base_freq``, unscaled: transformers'
    ``rotary_emb_local``).
    """
    import numpy as np

    if local:
        config = {**config, "rope_theta": config["rope_local_base_freq"], "rope_scaling": None}
    dims = shape.rope_dims
    base = float(config.get("rope_theta", 10000.0))
    inv_freq = 1.0 / base ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    kind = rope_scaling_type(config)
    pos = np.arange(positions, dtype=np.float64)
    if kind == "linear":
        pos = pos / float(config["rope_scaling"]["factor"])
    elif kind == "llama3":
        inv_freq = inv_freq / llama3_rope_factors(config, shape).astype(np.float64)
    angles = np.outer(pos, inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def sliding_window(config: dict[str, Any]) -> int:
    """GroupQueryAttention's local_window_size for the sliding layers: -1 for full attention."""
    window = config.get("sliding_window")
    if not window or config.get("use_sliding_window") is False:
        return -1
    return int(window)


def layer_windows(config: dict[str, Any]) -> list[int]:
    """Each layer's local_window_size (-1: global attention), from transformers' layer types."""
    window = sliding_window(config)
    return [window if kind == "sliding_attention" else -1 for kind in layer_types(config)]


def local_rope(config: dict[str, Any]) -> bool:
    """True when the sliding-window layers rotate with their own base (Gemma 3's ``rope_local_base_freq``)."""
    return bool(config.get("rope_local_base_freq")) and "sliding_attention" in layer_types(config)


def logit_softcap(config: dict[str, Any]) -> float | None:
    """``final_logit_softcapping``: the logits become cap * tanh(logits / cap); None when unset."""
    cap = config.get("final_logit_softcapping")
    return float(cap) if cap else None


def attention_scale(config: dict[str, Any], shape: Shape) -> float:
    scalar = config.get("query_pre_attn_scalar")
    return 1.0 / math.sqrt(float(scalar) if scalar else float(shape.head_dim))
