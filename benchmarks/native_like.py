"""A native-like copy of a grid-aligned checkpoint: every block of 32 weights moved off its 4-bit grid.

    .venv/bin/python benchmarks/native_like.py [--source packaged:smollm2] [--out DIR] [--seed 0]

The packaged SmolLM2 folder is dequantized from llama.cpp's Q4_1: every block of 32 consecutive weights of a row
sits on ``m + q * d`` (q in 0..15), exactly the grid a 4-bit scheme with a float block minimum reproduces, which
flatters it. A natively trained checkpoint has no such grid. This copy adds to every weight of every 2-D matrix
uniform noise of one quantization step of its block, ``U(-d/2, d/2)`` with ``d = (max - min) / 15`` of the block,
so each weight lands anywhere in its grid cell, as a float weight would. The token embedding was Q8_0 in that
GGUF (blocks of 32 on ``q * d``, q in -127..127, d = max|w| / 127): it moves by one step of its own grid. Greedy
answers stay the same (the step is the rounding error the GGUF already carried); 1-D tensors (norms) are copied.

The benchmarks take ``--source native-like`` for this copy (made once into $EDGEKIT_CACHE/bench/native-like-SEED),
and the gate then compares with the copy, not with the grid-aligned original.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

BLOCK, STEPS = 32, 15  # Q4_1: blocks of 32 along a row, 16 levels


def dither(w: np.ndarray, rng: np.random.Generator, q8: bool = False) -> np.ndarray:
    """``w`` (N, K) with each block of 32 along K moved by U(-d/2, d/2), d its block's grid step (Q4_1's, or
    with ``q8`` Q8_0's)."""
    n, k = w.shape
    nb = k // BLOCK
    out = w.astype(np.float32, copy=True)
    blocks = out[:, : nb * BLOCK].reshape(n, nb, BLOCK)
    if q8:
        step = np.abs(blocks).max(axis=-1, keepdims=True) / 127
    else:
        step = (blocks.max(axis=-1, keepdims=True) - blocks.min(axis=-1, keepdims=True)) / STEPS
    blocks += (rng.random(blocks.shape, dtype=np.float32) - 0.5) * step
    out[:, : nb * BLOCK] = blocks.reshape(n, nb * BLOCK)
    return out


def make(source: Path, out: Path, seed: int = 0) -> Path:
    """Write the native-like copy of the HF folder ``source`` to ``out`` (skipped when it is already there)."""
    from safetensors.numpy import load_file, save_file

    stamp = out / ".native-like"
    if stamp.is_file() and stamp.read_text() == f"{source.resolve()}|{seed}":
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    moved = 0
    for f in sorted(source.iterdir()):
        if f.suffix == ".safetensors":
            tensors = load_file(f)
            for name, t in tensors.items():
                if t.ndim == 2 and t.shape[1] % BLOCK == 0 and np.issubdtype(t.dtype, np.floating):
                    tensors[name] = dither(t, rng, q8="embed_tokens" in name).astype(t.dtype)
                    moved += t.size
            save_file(tensors, tmp / f.name, metadata={"format": "pt"})
        elif f.is_file() and not f.name.startswith(".edgekit"):
            shutil.copy2(f, tmp / f.name)
    (tmp / ".native-like").write_text(f"{source.resolve()}|{seed}")
    (tmp / "NATIVE_LIKE.json").write_text(json.dumps({"source": str(source), "seed": seed, "block": BLOCK,
                                                      "dither": "U(-d/2, d/2), d = (max - min) / 15 per block",
                                                      "weights_moved": moved}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve(source: str, seed: int = 0) -> Path:
    """``packaged:smollm2`` (the grid-aligned folder), ``native-like`` (its dithered copy) or a folder."""
    from edgekit.fileio import cache_dir
    from edgekit.packaged import smollm2_hf_folder

    if source in ("packaged:smollm2", "grid"):
        return smollm2_hf_folder()
    if source == "native-like":
        return make(smollm2_hf_folder(), cache_dir() / "bench" / f"native-like-{seed}", seed)
    return Path(source)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="packaged:smollm2", help="a grid-aligned HF folder (default: SmolLM2)")
    ap.add_argument("--out", type=Path, help="default: $EDGEKIT_CACHE/bench/native-like-SEED")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from edgekit.fileio import cache_dir

    src = resolve(args.source)
    out = make(src, args.out or cache_dir() / "bench" / f"native-like-{args.seed}", args.seed)
    print(out)


if __name__ == "__main__":
    sys.exit(main())
