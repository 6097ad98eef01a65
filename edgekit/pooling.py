"""Sentence-embedding pooling, one function for both sides of the encoder gate.

The ONNX runtime pools an encoder's hidden states into embeddings with it, and
the quality gate pools the transformers reference's hidden states with it, so
the two sides are compared after the same pooling. numpy only.
"""

from __future__ import annotations

import numpy as np


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """(batch, seq, dim) hidden states and a (batch, seq) mask -> (batch, dim) float32 vectors.

    ``mode``: mean (over unmasked tokens), cls (the first token), max, or none (the output is already pooled,
    or its first token is taken); ``normalize`` scales each vector to unit length.
    """
    if hidden.ndim == 2 or mode == "none":
        vec = hidden if hidden.ndim == 2 else hidden[:, 0]
    elif mode == "cls":
        vec = hidden[:, 0]
    elif mode == "max":
        vec = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
    else:
        m = mask[..., None].astype(hidden.dtype)
        vec = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    vec = vec.astype(np.float32)
    if normalize:
        vec /= np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
    return vec
