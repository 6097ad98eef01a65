"""edgekit's ONNX export against optimum-cli on the same model, and int8 vs fp32 MiniLM.

    .venv/bin/python benchmarks/export_onnx.py [--model packaged:smollm2] [--repeats 2]

Each export runs in its own process; wall time and the process's peak RSS (kernel
``wait4`` ru_maxrss) are compared, edgekit over optimum-cli (goal <= 1.1x):
  * ``optimum-cli export onnx`` (tracing + its own validation),
  * ``edgekit export onnx --no-gate --no-optimize`` (tracing + manifest: the like-for-like),
  * ``edgekit export onnx --no-gate`` (+ the decoder graph rewrite; its time is shown separately),
  * ``edgekit export onnx`` (+ the quality gate; the gate's time is shown separately).
Then MiniLM int8 vs fp32: file size ratio, onnxruntime latency ratio at batch 32, cosine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command, from the kernel (wait4), spawned by edgekit's
    bench launcher: a tiny parent, since a child's ru_maxrss starts from its parent's high-water mark."""
    from edgekit.profiler.bench import run_once

    _, code, timed_out, rss, wall, stderr = run_once(cmd, timeout=3600)
    if code != 0 or timed_out or rss is None:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{stderr[-2000:]}")
    return wall, rss / 2**20


def export_comparison(model: str, task: str, repeats: int) -> dict:
    from edgekit.sources import resolve_source

    src = str(resolve_source(model, hash_weights=False).path)
    rows: dict[str, list] = {"optimum-cli": [], "edgekit --no-gate --no-optimize": [], "edgekit --no-gate": [],
                             "edgekit (with gate)": []}
    gate_s = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for name in rows:
                out = Path(tmp) / f"{name.replace(' ', '').replace('(', '').replace(')', '')}-{i}"
                if name == "optimum-cli":
                    cmd = [str(BIN / "optimum-cli"), "export", "onnx", "--model", src, "--task", task, str(out)]
                else:
                    cmd = [sys.executable, "-m", "edgekit", "export", "onnx", src, "-o", str(out)]
                    cmd += [flag for flag in ("--no-gate", "--no-optimize") if flag in name]
                rows[name].append(run(cmd))
                if name == "edgekit (with gate)":
                    m = json.loads((out / "edgekit.json").read_text())
                    gate_s.append(m["gate"]["seconds"])
                shutil.rmtree(out, ignore_errors=True)
    base_t = statistics.median(r[0] for r in rows["optimum-cli"])
    base_m = statistics.median(r[1] for r in rows["optimum-cli"])
    print(f"\nexport of {model} ({task}), median of {repeats}:")
    print("| exporter | wall s | peak RSS MB | time vs optimum-cli | RSS vs optimum-cli |\n|---|---|---|---|---|")
    out = {}
    for name, rs in rows.items():
        t, m = statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)
        out[name] = {"wall_s": t, "peak_rss_mb": m, "time_ratio": t / base_t, "rss_ratio": m / base_m}
        print(f"| {name} | {t:.1f} | {m:.0f} | {t / base_t:.2f}x | {m / base_m:.2f}x |")
    rewrite_delta = out["edgekit --no-gate"]["wall_s"] - out["edgekit --no-gate --no-optimize"]["wall_s"]
    print(f"graph rewrite (attention without repeat_kv copies): {rewrite_delta:.1f} s of wall time")
    gate_delta = out["edgekit (with gate)"]["wall_s"] - out["edgekit --no-gate"]["wall_s"]
    print(f"gate: {gate_delta:.1f} s of wall time (reference in transformers + artifact in onnxruntime; "
          f"artifact side alone {statistics.median(gate_s):.1f} s)")
    return out


def minilm_int8_vs_fp32(threads: int) -> dict:
    import onnxruntime as ort

    import edgekit
    from edgekit.fileio import cache_dir

    root = cache_dir() / "bench"
    arts = {}
    for q in ("none", "int8"):
        path = root / f"minilm-{'fp32' if q == 'none' else q}"
        if not (path / "edgekit.json").is_file():
            edgekit.export_onnx("packaged:minilm", path, quant=q, force=True)
        arts[q] = path
    texts = [f"sentence number {i} about running small language models on phones and laptops" for i in range(32)]
    model = edgekit.load(arts["none"])
    ids, mask = model.tokenizer.encode_batch(texts)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = {q: ort.InferenceSession(str(p / "model.onnx"), opts, providers=["CPUExecutionProvider"]) for q, p in arts.items()}
    times = {q: [] for q in sessions}
    for _ in range(15):
        for q, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds)
            times[q].append(time.perf_counter() - t)
    vec = {q: edgekit.load(p).embed(texts) for q, p in arts.items()}
    cos = (vec["none"] * vec["int8"]).sum(1)
    size = {q: (p / "model.onnx").stat().st_size for q, p in arts.items()}
    res = {
        "size_ratio": size["int8"] / size["none"],
        "latency_ratio": statistics.median(times["int8"]) / statistics.median(times["none"]),
        "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
    }
    print(f"\nMiniLM int8 vs fp32 (batch 32, {threads} threads): size {size['int8'] / 1e6:.1f} MB / {size['none'] / 1e6:.1f} MB "
          f"= {res['size_ratio']:.3f}; latency ratio {res['latency_ratio']:.2f} (speed-up {1 / res['latency_ratio']:.2f}x); "
          f"cosine mean {res['cos_mean']:.4f}, min {res['cos_min']:.4f}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="packaged:smollm2")
    ap.add_argument("--task", default="text-generation-with-past", help="optimum task name for optimum-cli")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    export_comparison(args.model, args.task, args.repeats)
    minilm_int8_vs_fp32(args.threads)


if __name__ == "__main__":
    main()
