"""Mobile packages: ORT-format load time and first-token latency against the .onnx, and package sizes.

    .venv/bin/python benchmarks/package.py [--runs 5] [--threads 2] [--prompt-tokens 32]

For MiniLM int8, SmolLM2 int8 and int4 (ONNX) and SmolLM2 q4_k_m (GGUF), exported once into
~/.cache/edgekit/bench (or $EDGEKIT_CACHE/bench), packaged for android into .../bench/packages:

  * load: creating an onnxruntime session (CPU EP, --threads) from the artifact's .onnx (optimised
    at load, level all, as edgekit's runtime does) and from the package's .ort (optimised when it was
    converted); each measurement in a fresh process, the .onnx and .ort sides alternating which goes
    first, the median of --runs;
  * first token: in the same fresh process, the first run after the load: a --prompt-tokens prompt
    through the decoder and the argmax of its last logits (MiniLM: one sentence's hidden states),
    so lazy initialisation (weight pre-packing) is counted where the app would pay it;
  * sizes: model file, whole package, and the estimated reduced-operator ONNX Runtime
    (edgekit.package.sizes: ONNX Runtime's published minimal-build sizes).
ORT format should load faster: its graph is optimised already and its weights are read from one
flatbuffer. The phone is not measured here; the ratios carry over, the seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORKER = "--worker"


def worker(kind: str, path: str, threads: int, prompt_tokens: int) -> None:
    """One fresh process: load one model file, run it once, print the seconds as JSON."""
    import numpy as np
    import onnxruntime as ort

    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if path.endswith(".onnx"):
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    t1 = time.perf_counter()
    inputs = {i.name: i for i in sess.get_inputs()}
    ids = np.arange(100, 100 + prompt_tokens, dtype=np.int64)[None, :]
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.zeros_like(ids)
    if "position_ids" in inputs:
        feeds["position_ids"] = np.arange(prompt_tokens, dtype=np.int64)[None, :]
    for name, meta in inputs.items():
        if name.startswith("past_key_values."):
            feeds[name] = np.zeros((1, meta.shape[1], 0, meta.shape[3]), dtype=np.float32)
    feeds = {k: v for k, v in feeds.items() if k in inputs}
    out = sess.run([sess.get_outputs()[0].name], feeds)[0]
    if kind == "decoder":
        int(np.argmax(out[0, -1]))
    t2 = time.perf_counter()
    print(json.dumps({"load_s": t1 - t0, "first_s": t2 - t1}))


def measure(kind: str, path: Path, args) -> dict:
    proc = subprocess.run([sys.executable, __file__, WORKER, kind, str(path), str(args.threads),
                           str(args.prompt_tokens)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def artifacts(bench: Path) -> list[tuple[str, str, Path]]:
    """(label, kind, artifact folder), exported once into the bench cache."""
    import edgekit

    rows = []
    for name, source, fmt, quant, kind in (
        ("minilm-int8", "packaged:minilm", "onnx", "int8", "encoder"),
        ("smollm2-int8", "packaged:smollm2", "onnx", "int8", "decoder"),
        ("smollm2-int4", "packaged:smollm2", "onnx", "int4", "decoder"),
        ("smollm2-q4_k_m", "packaged:smollm2", "gguf", "q4_k_m", "decoder"),
    ):
        path = bench / name
        if not (path / "edgekit.json").is_file():
            print(f"exporting {name} ...", file=sys.stderr)
            export = edgekit.export_onnx if fmt == "onnx" else edgekit.export_gguf
            export(source, path, quant=quant, force=True)
        rows.append((name, kind, path))
    return rows


def mb(n) -> str:
    return f"{n / 1e6:.1f}" if n else "-"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import edgekit
    from edgekit.fileio import cache_dir

    bench = cache_dir() / "bench"
    results = []
    for name, kind, art in artifacts(bench):
        t = time.perf_counter()
        pkg = edgekit.package(art, bench / "packages" / f"{name}-android", platform="android", force=True)
        package_s = time.perf_counter() - t
        m = pkg.manifest
        row = {"model": name, "format": m.format, "model_bytes": pkg.size_report["model_bytes"],
               "package_bytes": pkg.size_report["package_bytes"],
               "source_bytes": sum(f.size for f in edgekit.read_manifest(art).files),
               "runtime_bytes": pkg.size_report["runtime"].get("estimated_bytes"),
               "operators": pkg.size_report["runtime"].get("operators"), "package_s": package_s}
        if m.format == "onnx":
            onnx, ort_file = art / "model.onnx", pkg.path / m.model_file
            sides: dict[str, list[dict]] = {"onnx": [], "ort": []}
            for i in range(args.runs):  # alternate which side goes first
                order = [("onnx", onnx), ("ort", ort_file)]
                for side, path in (order if i % 2 == 0 else order[::-1]):
                    sides[side].append(measure(kind, path, args))
            for side, runs in sides.items():
                row[f"load_{side}"] = statistics.median(r["load_s"] for r in runs)
                row[f"first_{side}"] = statistics.median(r["first_s"] for r in runs)
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(f"\nandroid packages, onnxruntime {__import__('onnxruntime').__version__}, {args.threads} threads, "
          f"median of {args.runs} fresh processes; first = first run after load ({args.prompt_tokens}-token prompt)\n")
    head = ("| model | artifact MB | package MB | model file MB | est. ORT runtime MB (ops) | load .onnx s "
            "| load .ort s "
            "| .ort/.onnx | first .onnx ms | first .ort ms | .ort/.onnx | packaging s |")
    print(head)
    print("|" + "|".join(["---"] * (head.count("|") - 1)) + "|")
    for r in results:
        rt = f"{mb(r['runtime_bytes'])} ({r['operators']})" if r["runtime_bytes"] else "- (llama.cpp)"
        if "load_onnx" in r:
            timing = (f"{r['load_onnx']:.2f} | {r['load_ort']:.2f} | {r['load_ort'] / r['load_onnx']:.2f} | "
                      f"{r['first_onnx'] * 1e3:.0f} | {r['first_ort'] * 1e3:.0f} | "
                      f"{r['first_ort'] / r['first_onnx']:.2f}")
        else:
            timing = "- | - | - | - | - | -"
        print(f"| {r['model']} | {mb(r['source_bytes'])} | {mb(r['package_bytes'])} | {mb(r['model_bytes'])} | {rt} | "
              f"{timing} | {r['package_s']:.0f} |")


if __name__ == "__main__":
    main()
