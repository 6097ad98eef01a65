"""Block-wise weight quantization in numpy, in the layouts of onnxruntime's MatMulNBits and GatherBlockQuantized.

A weight matrix ``W`` (``N`` outputs x ``K`` inputs, Hugging Face's Linear layout)
is cut into blocks of ``block`` consecutive inputs per output row. Each block has
a float scale and an integer zero point; the weight is read back as
``(q - zero_point) * scale`` with ``q`` in ``[0, 2**bits)``. ``q`` is packed along
``K`` (4 bits: two per byte, the first in the low nibble), zero points likewise.

Ways to choose a block's scale and zero point:

* ``rtn``: the block's range (widened to include 0) split into ``2**bits - 1`` steps;
* ``search``: the range is shrunk and shifted over a small grid of candidates and
  the candidate with the least (importance-weighted) squared error is kept, the
  idea of llama.cpp's ``make_qkx2_quants``; ``importance`` is an optional per-input
  weight (the mean squared activation of that input channel);
* ``gptq``: the rounding of each input column is corrected in the columns not yet
  rounded, through the inverse of the inputs' second moment ``H = X^T X`` (Frantar et
  al., "GPTQ", 2022, with groups of ``block`` whose scale is chosen by ``search`` on the
  corrected weights when the group starts); needs ``hessian`` (K x K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QuantMatrix:
    packed: np.ndarray  # uint8 (N, k_blocks, block*bits/8)
    scales: np.ndarray  # float32 (N, k_blocks)
    zero_points: np.ndarray  # uint8 (N, ceil(k_blocks*bits/8))
    bits: int
    block: int
    n: int
    k: int
    offsets: np.ndarray | None = None  # float32 (N, k_blocks): each block's minimum ("minmax"; zero points are 0)

    @property
    def nbytes(self) -> int:
        extra = 0 if self.offsets is None else self.offsets.size * 2  # stored as float16
        return self.packed.nbytes + self.scales.nbytes + self.zero_points.nbytes + extra


def _blocks(w: np.ndarray, block: int) -> np.ndarray:
    n, k = w.shape
    nb = -(-k // block)
    if nb * block != k:
        w = np.pad(w, ((0, 0), (0, nb * block - k)))
    return w.reshape(n, nb, block)


def _pack(q: np.ndarray, bits: int) -> np.ndarray:
    """Pack the last axis of uint8 values of ``bits`` bits (4 or 8), low bits first."""
    if bits == 8:
        return q.astype(np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), dtype=q.dtype)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _rtn(x: np.ndarray, qmax: int):
    lo = np.minimum(x.min(axis=-1), 0.0)
    hi = np.maximum(x.max(axis=-1), 0.0)
    scale = (hi - lo) / qmax
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    zp = np.clip(np.round(-lo / scale), 0, qmax)
    return scale, zp


def _error(x, w, scale, zp, qmax):
    q = np.clip(np.round(x / scale[..., None]) + zp[..., None], 0, qmax)
    d = (q - zp[..., None]) * scale[..., None] - x
    return (d * d * w).sum(axis=-1)


def _search(x: np.ndarray, qmax: int, weight: np.ndarray, steps: int = 16):
    """Per block, the (scale, zero point) on a grid of shrunk ranges with the least weighted squared error."""
    best_scale, best_zp = _rtn(x, qmax)
    best_err = _error(x, weight, best_scale, best_zp, qmax)
    lo0 = np.minimum(x.min(axis=-1), 0.0)
    hi0 = np.maximum(x.max(axis=-1), 0.0)
    for i in range(1, steps):
        for shift in (-0.5, 0.0, 0.5):
            shrink = 1.0 - 0.02 * i
            lo = lo0 * (shrink + 0.01 * shift)
            hi = hi0 * (shrink - 0.01 * shift)
            scale = (hi - lo) / qmax
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            zp = np.clip(np.round(-lo / scale), 0, qmax)
            err = _error(x, weight, scale, zp, qmax)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_scale = np.where(better, scale, best_scale)
            best_zp = np.where(better, zp, best_zp)
    return best_scale, best_zp


def quantize(w: np.ndarray, bits: int = 4, block: int = 32, method: str = "rtn",
             importance: np.ndarray | None = None, hessian: np.ndarray | None = None) -> QuantMatrix:
    """Quantize a float ``(N, K)`` matrix block-wise along ``K`` (see the module docstring)."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    qmax = (1 << bits) - 1
    if method == "gptq":
        if hessian is None or k % block:
            method = "search" if hessian is None else "rtn"
        else:
            return _gptq(w, hessian, bits, block)
    x = _blocks(w, block)
    if method == "rtn":
        scale, zp = _rtn(x, qmax)
    elif method == "search":
        imp = np.ones(k, dtype=np.float32) if importance is None else np.asarray(importance, dtype=np.float32)
        weight = _blocks(imp[None, :], block)  # (1, nb, block)
        scale, zp = np.empty(x.shape[:2], np.float32), np.empty(x.shape[:2], np.float32)
        for s in range(0, n, 512):  # rows in chunks: the grid search holds a few copies of its slice
            scale[s:s + 512], zp[s:s + 512] = _search(x[s:s + 512], qmax, weight)
    elif method == "minmax":
        return _minmax(x, qmax, bits, block, n, k)
    else:
        raise ValueError(f"unknown quantization method {method!r}: use rtn, search, gptq or minmax")
    q = np.clip(np.round(x / scale[..., None]) + zp[..., None], 0, qmax).astype(np.uint8)
    return QuantMatrix(_pack(q, bits), scale.astype(np.float32), _pack(zp.astype(np.uint8), bits), bits, block, n, k)


def _gptq(w: np.ndarray, hessian: np.ndarray, bits: int, block: int, lazy: int = 128,
          damp: float = 0.01) -> QuantMatrix:
    """GPTQ with groups of ``block`` columns (integer zero points, the MatMulNBits layout)."""
    n, k = w.shape
    qmax = (1 << bits) - 1
    W = w.astype(np.float64, copy=True)
    H = hessian.astype(np.float64, copy=True)
    diag = np.diag(H).copy()
    dead = diag <= 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H[np.diag_indices(k)] += damp * float(np.mean(np.diag(H)))
    # the upper Cholesky factor of H^-1: row j holds how column j's error spreads to the columns after it
    hinv = np.linalg.cholesky(np.linalg.inv(H)).T
    importance = np.where(dead, 0.0, diag).astype(np.float32)
    q = np.empty((n, k), np.uint8)
    nb = k // block
    scales = np.empty((n, nb), np.float32)
    zps = np.empty((n, nb), np.float32)
    lazy = max(block, lazy - lazy % block)
    for b0 in range(0, k, lazy):
        b1 = min(b0 + lazy, k)
        w1 = W[:, b0:b1].copy()
        err1 = np.zeros_like(w1)
        for j in range(b1 - b0):
            col = b0 + j
            if col % block == 0:
                g = col // block
                grp = w1[:, j:j + block].astype(np.float32)[:, None, :]
                sc, zp = _search(grp, qmax, importance[None, None, col:col + block])
                scales[:, g], zps[:, g] = sc[:, 0], zp[:, 0]
            g = col // block
            qc = np.clip(np.round(w1[:, j] / scales[:, g]) + zps[:, g], 0, qmax)
            q[:, col] = qc
            e = (w1[:, j] - (qc - zps[:, g]) * scales[:, g]) / hinv[col, col]
            w1[:, j:] -= np.outer(e, hinv[col, col:b1])
            err1[:, j] = e
        W[:, b1:] -= err1 @ hinv[b0:b1, b1:]
    packed = _pack(q.reshape(n, nb, block), bits)
    return QuantMatrix(packed, scales, _pack(zps.astype(np.uint8), bits), bits, block, n, k)


def _minmax(x: np.ndarray, qmax: int, bits: int, block: int, n: int, k: int) -> QuantMatrix:
    """Asymmetric blocks with a float minimum: ``w = q * scale + offset`` (llama.cpp's Q4_1 grid).

    MatMulNBits takes only integer zero points on its fast path, so the block minimum is
    kept apart (``offsets``) and the graph adds ``sum_b offset[n, b] * sum(x in block b)``.
    """
    lo = x.min(axis=-1)
    offsets = lo.astype(np.float16).astype(np.float32)  # stored as float16: the grid starts there
    hi = x.max(axis=-1)
    scale = (hi - offsets) / qmax
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.round((x - offsets[..., None]) / scale[..., None]), 0, qmax).astype(np.uint8)
    zp = np.zeros(x.shape[:2], np.uint8)
    return QuantMatrix(_pack(q, bits), scale, _pack(zp, bits), bits, block, n, k, offsets=offsets)


def grid_fraction(w: np.ndarray, bits: int = 4, block: int = 32, tol: float = 1e-3) -> float:
    """The share of ``w``'s blocks whose weights all sit on a ``bits``-bit grid from the block's minimum to its
    maximum (what dequantizing llama.cpp's Q4_1 leaves: ``m + q * d``): 1.0 for such a checkpoint, about 0 for
    a natively trained one."""
    x = _blocks(np.asarray(w, dtype=np.float32), block)
    lo = x.min(axis=-1, keepdims=True)
    step = (x.max(axis=-1, keepdims=True) - lo) / ((1 << bits) - 1)
    r = (x - lo) / np.where(step > 0, step, 1.0)
    on = (np.abs(r - np.round(r)).max(axis=-1) < tol) & (step[..., 0] > 0)
    return float(on.mean())


def dequantize(m: QuantMatrix) -> np.ndarray:
    """The float ``(N, K)`` matrix a :class:`QuantMatrix` stands for (tests and error measurements)."""
    if m.bits == 8:
        q, zp = m.packed.astype(np.float32), m.zero_points.astype(np.float32)
    else:
        q = np.stack([m.packed & 15, m.packed >> 4], axis=-1).reshape(m.packed.shape[:-1] + (-1,)).astype(np.float32)
        z = m.zero_points
        zp = np.stack([z & 15, z >> 4], axis=-1).reshape(z.shape[0], -1)[:, : m.scales.shape[1]].astype(np.float32)
    w = (q - zp[..., None]) * m.scales[..., None]
    if m.offsets is not None:
        w = w + m.offsets[..., None]
    return w.reshape(m.n, -1)[:, : m.k]
