"""Which decoder families the fused ONNX builder covers, and what differs between them.

The tensor names are the GGUF side's: every checkpoint tensor is mapped to its
llama.cpp name (``blk.3.attn_q.weight``) through gguf-py's ``TensorNameMap``
for the architecture :mod:`edgekit.exporters.gguf.archs` picks, so one table
(gguf-py's) says where each Hugging Face tensor goes for both exporters. A
:class:`FusedSpec` adds only what the ONNX graph needs to know beyond the names:
how norms apply their weight, how the embedding is scaled, the MLP activation.
Layout facts (a packed ``qkv`` or ``gate_up`` tensor, q/k/v biases, per-head q/k
norms) are read from which tensors the checkpoint has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgekit.errors import UnsupportedModelError
from edgekit.exporters.gguf import archs


@dataclass(frozen=True)
class FusedSpec:
    """What the fused graph of one family needs beyond the GGUF spec (which it wraps)."""

    gguf: archs.ArchSpec
    activation: str = "silu"  # silu | gelu_tanh
    norm_plus_one: bool = False  # RMSNorm applies (1 + w) (Gemma): the builder stores 1 + w
    embed_scale: bool = False  # embeddings multiplied by sqrt(hidden_size) (Gemma)
    genai_type: str = "llama"  # onnxruntime-genai's model type for genai_config.json

    @property
    def name(self) -> str:
        return self.gguf.name


FUSED: dict[str, FusedSpec] = {
    "llama": FusedSpec(archs.BY_MODEL_TYPE["llama"], genai_type="llama"),
    "mistral": FusedSpec(archs.BY_MODEL_TYPE["mistral"], genai_type="mistral"),
    "qwen2": FusedSpec(archs.BY_MODEL_TYPE["qwen2"], genai_type="qwen2"),
}


def covered_model_types() -> list[str]:
    return sorted(FUSED)


def covers(config: dict[str, Any]) -> bool:
    """True when the fused builder can build this transformers config (a causal LM of a covered family)."""
    try:
        fused_spec_for(config)
    except UnsupportedModelError:
        return False
    return True


def fused_spec_for(config: dict[str, Any]) -> FusedSpec:
    """The spec for a transformers config, or :class:`UnsupportedModelError` naming the covered types."""
    model_type = str(config.get("model_type", ""))
    spec = FUSED.get(model_type)
    if spec is None:
        raise UnsupportedModelError(
            f"model type {model_type!r} has no fused ONNX decoder builder; covered: {', '.join(covered_model_types())} "
            "(export it with via='optimum')", param="via")
    archs.spec_for(config)  # causal LM, rope scaling the family supports
    return spec


def rope_tables(config: dict[str, Any], shape: archs.Shape, positions: int):
    """cos/sin caches for GroupQueryAttention: (positions, rope_dims/2) each, float32 (rotate-half layout)."""
    import numpy as np

    dims = shape.rope_dims
    base = float(config.get("rope_theta", 10000.0))
    inv_freq = 1.0 / base ** (np.arange(0, dims, 2, dtype=np.float64) / dims)
    kind = archs.rope_scaling_type(config)
    pos = np.arange(positions, dtype=np.float64)
    if kind == "linear":
        pos = pos / float(config["rope_scaling"]["factor"])
    elif kind == "llama3":
        inv_freq = inv_freq / archs.llama3_rope_factors(config, shape).astype(np.float64)
    angles = np.outer(pos, inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def sliding_window(config: dict[str, Any]) -> int:
    """GroupQueryAttention's local_window_size: -1 for full attention."""
    window = config.get("sliding_window")
    if not window or config.get("use_sliding_window") is False:
        return -1
    return int(window)


def attention_scale(config: dict[str, Any], shape: archs.Shape) -> float:
    scalar = config.get("query_pre_attn_scalar")
    return 1.0 / math.sqrt(float(scalar) if scalar else float(shape.head_dim))
