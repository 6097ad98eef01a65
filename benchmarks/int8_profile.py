"""Why dynamic int8 barely speeds up decoding, and what does: onnxruntime's own profiler, per op type.

    .venv/bin/python benchmarks/int8_profile.py [--tokens 64] [--threads 2]

Exports SmolLM2 as fp32 (edgekit's graph, and as optimum traced it), int8 dynamic (quantize_dynamic, gate skipped: it fails it),
int8 block-wise (MatMulNBits 8-bit) and int4, decodes --tokens tokens with each under
onnxruntime's profiler, and prints decode tokens/s and the share of time per op type.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
from pathlib import Path

import edgekit
from edgekit.fileio import cache_dir
from edgekit.manifest import read_manifest

VARIANTS = {
    "fp32": dict(quant="none"),
    "fp32-traced": dict(quant="none", optimize=False),
    "int8-dynamic": dict(quant="int8", int8_mode="dynamic", run_gate=False),
    "int8-blockwise": dict(quant="int8", int8_mode="blockwise"),
    "int4": dict(quant="int4"),
}


def profile(path: Path, tokens: int, threads: int) -> tuple[float, dict[str, float]]:
    import onnxruntime as ort

    model = edgekit.load(path, threads=threads)
    ids = model.tokenize("Edge devices run small language models close to the data. " * 10)[:64]
    speed = model.generate_ids(ids, max_tokens=tokens, ignore_eos=True).timings.decode_tps
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.parent / f"profile-{path.name}")
    sess = ort.InferenceSession(str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    model.session = sess  # the same decode loop, on the profiling session
    model._setup()
    model.generate_ids(ids, max_tokens=tokens, ignore_eos=True)
    trace = Path(sess.end_profiling())
    per_op: dict[str, float] = collections.Counter()
    for ev in json.loads(trace.read_text()):
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            per_op[ev["args"].get("op_name", "?")] += ev["dur"]
    trace.unlink()
    total = sum(per_op.values()) or 1
    return speed, {k: v / total for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = cache_dir() / "bench"
    results = {}
    for name, kw in VARIANTS.items():
        path = root / f"smollm2-{name}"
        if not (path / "edgekit.json").is_file() or (
            bool(read_manifest(path).graph_rewrites) != kw.get("optimize", True)
        ):
            shutil.rmtree(path, ignore_errors=True)
            edgekit.export_onnx("packaged:smollm2", path, force=True, **kw)
        results[name] = profile(path, args.tokens, args.threads)
    base = results["fp32"][0]
    print("\n| variant | decode tok/s | vs fp32 | top op types by kernel time |\n|---|---|---|---|")
    for name, (tps, ops) in results.items():
        top = ", ".join(f"{k} {v:.0%}" for k, v in list(ops.items())[:5])
        print(f"| {name} | {tps:.1f} | {tps / base:.2f}x | {top} |")



if __name__ == "__main__":
    main()
