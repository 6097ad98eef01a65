"""What the GGUF converter does per family beyond the registry (:mod:`edgekit.families`): hyper-parameters
and the tensor layout changes llama.cpp expects.

Which families are covered, their llama.cpp architecture, rope scalings and checks are rows of
:mod:`edgekit.families`; tensor names come from gguf-py's own ``TensorNameMap``
(:class:`edgekit.families.TensorNames`).

Why the q/k permutation: Hugging Face Llama checkpoints apply rotary embeddings
"rotate half" style (the first and second halves of each head are the pair),
while llama.cpp's ``llama`` architecture rotates adjacent pairs (Meta's original
layout). The rows of ``q_proj``/``k_proj`` are therefore re-ordered so that row
``h*d + 2i`` holds what HF had at ``h*d + i`` and row ``h*d + 2i + 1`` what it had at
``h*d + d/2 + i`` (rows with ``permute_qk``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgekit.families import Family, Shape, rope_scaling_type, shape_of


def _permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Re-order the rows of a q/k projection (or its bias) from HF rotate-half to adjacent pairs."""
    rows = w.shape[0]
    head_dim = rows // n_head
    rest = w.shape[1:]
    return w.reshape(n_head, 2, head_dim // 2, *rest).swapaxes(1, 2).reshape(w.shape)


def write_hparams(writer, family: Family, cfg: dict[str, Any], vocab_size: int) -> Shape:
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
    if family.gguf_hparams is not None:
        family.gguf_hparams(writer, cfg)
    return s


def tensor_transform(family: Family, gguf_name: str, shape: Shape) -> Callable[[np.ndarray], np.ndarray] | None:
    """The layout change llama.cpp expects for one tensor (None: copy as is)."""
    if family.permute_qk and gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
        return lambda w: _permute_rows(w, shape.n_heads)
    if family.permute_qk and gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
        return lambda w: _permute_rows(w, shape.n_kv_heads)
    if family.norm_plus_one and gguf_name.endswith("norm.weight"):
        return lambda w: w + np.asarray(1.0, dtype=w.dtype)
    return None
