"""edgekit's GGUF export on SmolLM2-135M: conversion cost, then size / quality / speed per quantization.

    .venv/bin/python benchmarks/export_gguf.py [--model packaged:smollm2] [--threads 2] [--tokens 64] [--repeats 3]

1. Conversion (f16, no gate), each run in its own process; wall time and peak RSS
   (kernel ``wait4`` ru_maxrss), against the plain gguf-py way in the same run: load
   every tensor with ``safetensors.safe_open`` and hand them all to ``GGUFWriter.add_tensor``
   before ``write_tensors_to_file`` (tensors only: no tokenizer, so no llama.cpp tokenizer check either).
2. For f16, q8_0, q6_k, q4_k_m, q4_0: file size, KL mean and top-1 agreement against the
   transformers fp32 reference (the gate's numbers) and KL mean against the f16 GGUF
   (quantization loss alone), and decode tokens/s with ``--threads`` threads: raw
   llama-cpp-python (``Llama.eval`` one token at a time, greedy argmax on its logits) and
   edgekit's runtime (``generate_ids``, ignore_eos) on the same file, as a ratio.

The machine is shared, so absolute times are noisy: compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUANTS = ("f16", "q8_0", "q6_k", "q4_k_m", "q4_0")

EDGEKIT_CONVERT = """
import sys
from pathlib import Path
from edgekit.exporters.gguf.convert import convert
from edgekit.sources import resolve_source
convert(resolve_source(sys.argv[1], hash_weights=False), Path(sys.argv[2]), "f16")
"""

# The plain gguf-py way: every tensor in memory, then one write (tensor names mapped, no permutation or vocab).
NAIVE_CONVERT = """
import sys
import numpy as np
import gguf
from safetensors import safe_open
from pathlib import Path
src, out = Path(sys.argv[1]), sys.argv[2]
files = sorted(src.glob("*.safetensors"))
w = gguf.GGUFWriter(out, "llama")
import json
n_layers = json.loads((src / "config.json").read_text())["num_hidden_layers"]
names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
for f in files:
    with safe_open(str(f), framework="numpy") as st:
        for k in st.keys():
            t = st.get_tensor(k)
            t = t.astype(np.float16) if t.ndim > 1 else t.astype(np.float32)
            w.add_tensor(names.get_name(k, try_suffixes=(".weight", ".bias")) or k, t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
"""


def run(code: str, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``python -c code args``, from the kernel (wait4).

    The run is spawned by edgekit's bench launcher, a tiny process: a child's ru_maxrss
    starts from its parent's high-water mark, and this script has loaded models itself.
    """
    from edgekit.profiler.bench import run_once

    _, code_, timed_out, rss, wall, stderr = run_once([sys.executable, "-c", code, *args], timeout=3600)
    if code_ != 0 or timed_out or rss is None:
        raise SystemExit(f"conversion failed:\n{stderr[-2000:]}")
    return wall, rss / 2**20


def raw_decode_tps(path: Path, prompt_ids: list[int], n: int, threads: int) -> float:
    """Decode tokens/s of plain llama-cpp-python: eval one token at a time, argmax of the last logits."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    try:
        llm.eval(prompt_ids)
        tok = int(np.argmax(llm._scores[-1]))
        t = time.perf_counter()
        for _ in range(n):
            llm.eval([tok])
            tok = int(np.argmax(llm._scores[-1]))
        return n / (time.perf_counter() - t)
    finally:
        llm.close()


def edgekit_decode_tps(path: Path, prompt_ids: list[int], n: int, threads: int) -> float:
    from edgekit.runtimes.llamacpp import LlamaCppModel

    model = LlamaCppModel(path, threads=threads, context=512)
    try:
        res = model.generate_ids(prompt_ids, max_tokens=n, ignore_eos=True)
        return res.timings.decode_tps
    finally:
        model.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged:smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from edgekit.exporters.gguf import _LlamaTokenizer, _open_for_gate, export_gguf
    from edgekit.quality import BUILTIN_PROMPTS, decoder_metrics, log_softmax
    from edgekit.sources import resolve_source

    src = resolve_source(args.model, hash_weights=False)
    f32_mb = sum(p.stat().st_size for p in src.weight_files) / 1e6
    print(f"model: {src.path}  ({f32_mb:.0f} MB of safetensors weights)   load average: {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-bench-gguf-"))
    try:
        rows = []
        for label, code in (("edgekit convert (streamed)", EDGEKIT_CONVERT), ("gguf-py, all tensors loaded", NAIVE_CONVERT)):
            runs = [run(code, str(src.path), str(tmp / "c.gguf")) for _ in range(args.repeats)]
            rows.append((label, statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)))
            (tmp / "c.gguf").unlink()
        print("\nconversion to f16 (median of", args.repeats, "runs, each in a fresh process)")
        print(f"| {'converter':<30} | {'wall s':>7} | {'peak RSS MB':>11} |")
        print(f"|{'-' * 32}|{'-' * 9}|{'-' * 13}|")
        for label, wall, rss in rows:
            print(f"| {label:<30} | {wall:7.2f} | {rss:11.0f} |")
        (_, w0, r0), (_, w1, r1) = rows
        print(f"ratio edgekit / gguf-py: wall {w0 / w1:.2f}x, peak RSS {r0 / r1:.2f}x; "
              f"edgekit peak RSS / f32 weights: {r0 / f32_mb:.2f}x")

        arts = {}
        for q in QUANTS:
            t = time.perf_counter()
            arts[q] = export_gguf(src.path, tmp / q, quant=q, thresholds={"kl_mean": 100, "kl_max": 1e4, "top1": 0.0},
                                  threads=1)
            print(f"exported {q} in {time.perf_counter() - t:.1f}s", file=sys.stderr)

        # KL against the f16 GGUF: the f16 file's distributions on the same token ids as reference.
        f16_model = _open_for_gate(arts["f16"].model_path, list(BUILTIN_PROMPTS), 1)
        ids = [_LlamaTokenizer(f16_model).encode(p) for p in BUILTIN_PROMPTS]
        f16_ref = [log_softmax(f16_model.sequence_logits(i)).astype(np.float32) for i in ids]
        f16_model.close()
        prompt_ids = ids[1]
        print(f"\nper quantization (decode: {args.tokens} tokens after a {len(prompt_ids)}-token prompt, "
              f"{args.threads} threads, median of {args.repeats})")
        head = ("quant", "size MB", "vs f16", "KL vs HF", "top-1 vs HF", "KL vs f16", "raw tok/s", "edgekit tok/s", "ratio")
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("-" * (len(h) + 2) for h in head) + "|")
        f16_size = arts["f16"].model_path.stat().st_size
        for q in QUANTS:
            art = arts[q]
            size = art.model_path.stat().st_size
            g = art.manifest.gate.metrics
            model = _open_for_gate(art.model_path, list(BUILTIN_PROMPTS), 1)
            kl_f16 = decoder_metrics(f16_ref, [model.sequence_logits(i) for i in ids])["kl_mean"]
            model.close()
            raws, oursl = [], []
            for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
                raws.append(raw_decode_tps(art.model_path, prompt_ids, args.tokens, args.threads))
                oursl.append(edgekit_decode_tps(art.model_path, prompt_ids, args.tokens, args.threads))
            raw, ours = statistics.median(raws), statistics.median(oursl)
            cells = (q, f"{size / 1e6:.1f}", f"{size / f16_size:.3f}", f"{g['kl_mean']:.2e}", f"{g['top1']:.3f}",
                     f"{kl_f16:.2e}", f"{raw:.1f}", f"{ours:.1f}", f"{ours / raw:.2f}x")
            print("| " + " | ".join(c.rjust(len(h)) for c, h in zip(cells, head)) + " |")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
