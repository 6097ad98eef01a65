"""Token selection and per-token confidence in numpy, shared by every local backend.

Confidence is computed from the model's own next-token distribution (softmax of
the raw logits of the last position, before temperature, penalties or
truncation), so the same model gives the same confidence whatever the sampling
settings: ``prob`` is the probability of the chosen token and ``entropy`` the
entropy of the distribution in nats. It costs one pass of exp over the vocabulary.
"""

from __future__ import annotations

import math

import numpy as np


def distribution(logits: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(e, z, entropy)`` of softmax(logits): ``e = exp(logits - max)``, ``z = e.sum()``, entropy in nats.

    ``z`` is NaN when a logit is NaN or +inf, or all are -inf (numpy's max propagates NaN), so
    checking ``z`` checks the whole vocabulary at no extra cost: the generation loop refuses
    non-finite logits with it. Some -inf logits (masked tokens) are fine: probability 0.
    """
    x = logits.astype(np.float32, copy=False)
    m = float(x.max())
    if not math.isfinite(m):  # a NaN anywhere, +inf anywhere, or nothing but -inf
        return x, math.nan, math.nan
    shifted = x - m
    e = np.exp(shifted)
    z = float(e.sum())
    # H = log Z - sum(p * (x - m))
    with np.errstate(invalid="ignore"):
        dot = float(np.dot(e, shifted))
    if dot != dot:  # NaN from 0 * -inf (masked tokens): leave them out (rare, so the slow path)
        keep = e > 0
        dot = float(np.dot(e[keep], shifted[keep]))
    entropy = float(np.log(z) - dot / z)
    return e, z, max(entropy, 0.0)  # NaN stays NaN (max keeps its first argument)


def confidence(logits: np.ndarray, token: int) -> tuple[float, float]:
    """(probability of ``token``, entropy in nats) under softmax(logits)."""
    e, z, entropy = distribution(logits)
    return float(e[token]) / z, entropy


class Sampler:
    """Chooses the next token: greedy when temperature is 0, else seeded sampling.

    Order of operations (the same on every backend): repetition penalty on the
    tokens seen so far (positive logits divided, negative multiplied), then
    temperature, then top-k, then top-p (nucleus), then a draw.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float, repetition_penalty: float, seed: int | None):
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, seen: np.ndarray | None) -> int:
        x = logits
        if self.repetition_penalty != 1.0 and seen is not None and len(seen):
            x = x.astype(np.float32, copy=True)
            idx = np.unique(seen)
            vals = x[idx]
            x[idx] = np.where(vals > 0, vals / self.repetition_penalty, vals * self.repetition_penalty)
        if self.temperature <= 0.0:
            return int(np.argmax(x))
        x = x.astype(np.float64) / self.temperature
        if self.top_k and 0 < self.top_k < x.shape[0]:
            cand = np.argpartition(-x, self.top_k - 1)[: self.top_k]
        else:
            cand = np.arange(x.shape[0])
        cx = x[cand]
        order = np.argsort(-cx, kind="stable")
        cand, cx = cand[order], cx[order]
        p = np.exp(cx - cx[0])
        p /= p.sum()
        if self.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(p), self.top_p) + 1)
            cand, p = cand[:keep], p[:keep] / p[:keep].sum()
        return int(cand[self.rng.choice(len(cand), p=p)])
