"""The profiler's sweep over SmolLM2 variants: measured on this host, predicted for three presets.

    .venv/bin/python benchmarks/profiler.py [--runs 3] [--warmup 1] [--prompt-tokens 128] [--gen-tokens 64]
                                            [--threads 2] [--targets raspberry-pi-5,pixel-8,macbook-air-m2]
                                            [--report DIR]

Artifacts: ONNX fp32/int8/int4 exported with edgekit, GGUF f16/q8_0/q4_k_m when ``edgekit.export_gguf`` is
importable, all exported once into ~/.cache/edgekit/bench-profiler (or $EDGEKIT_CACHE), and the packaged
SmolLM2 Q4_1 .gguf. For each artifact it prints:

* edgekit bench's medians (every run a fresh process) and, measured in the same script run, the raw
  library's own decode loop in a fresh process (llama-cpp-python ``Llama.eval`` one token at a time;
  onnxruntime ``InferenceSession.run`` with numpy KV feeds): the ratio edgekit / raw;
* the host's bandwidth roof: measured copy bandwidth (STREAM convention) / bytes read per token, and the
  fraction of it decode reaches;
* the roofline's predictions for the targets, calibrated on the host from the artifact's own runs.

Writes bench.json, bench.md and bench.png (size vs decode tok/s vs gate quality) into --report
(default ~/.cache/edgekit/bench-profiler/report). Timings on a shared machine are noisy: the CPU-wait
column says how long the runs waited for a CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import edgekit
from edgekit.fileio import cache_dir
from edgekit.manifest import read_manifest
from edgekit.packaged import smollm2_gguf_path, smollm2_hf_folder
from edgekit.profiler import bench
from edgekit.profiler.report import markdown_table, write_report
from edgekit.profiler.worker import TEXT
from edgekit.progress import RichProgress

RAW_GGUF = r"""
import ctypes, json, sys, time
import numpy as np, llama_cpp
path, threads, P, G, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
llm = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
ids = llm.tokenize((text * 20).encode())[:P]
vocab = llm.n_vocab()
def last():
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(vocab,))
t0 = time.perf_counter(); llm.eval(ids); tok = int(last().argmax()); prefill = time.perf_counter() - t0
lat = []
for _ in range(G - 1):
    t = time.perf_counter(); llm.eval([tok]); tok = int(last().argmax()); lat.append(time.perf_counter() - t)
print(json.dumps({"prefill_tps": P / prefill, "decode_tps": len(lat) / sum(lat)}))
"""

RAW_ONNX = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
folder, threads, P, G, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
sess = ort.InferenceSession(folder + "/model.onnx", o, providers=["CPUExecutionProvider"])
names = [i.name for i in sess.get_inputs()]
past = [i for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
ids = Tokenizer.from_file(folder + "/tokenizer.json").encode(text * 20).ids[:P]
feeds = {p.name: np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32) for p in past}
def step(tokens, n):
    f = dict(feeds)
    f["input_ids"] = np.asarray([tokens], np.int64)
    if "attention_mask" in names: f["attention_mask"] = np.ones((1, n + len(tokens)), np.int64)
    if "position_ids" in names: f["position_ids"] = np.arange(n, n + len(tokens), dtype=np.int64)[None]
    out = sess.run(None, f)
    for p, value in zip(past, out[1:]): feeds[p.name] = value
    return int(out[0][0, -1].argmax())
t0 = time.perf_counter(); tok = step(ids, 0); prefill = time.perf_counter() - t0
lat, n = [], len(ids)
for _ in range(G - 1):
    t = time.perf_counter(); tok = step([tok], n); n += 1; lat.append(time.perf_counter() - t)
print(json.dumps({"prefill_tps": P / prefill, "decode_tps": len(lat) / sum(lat)}))
"""


def artifacts(root: Path) -> list[Path]:
    """The SmolLM2 variants, exported once into ``root``."""
    out = []
    source = None
    for quant in ("fp32", "int8", "int4"):
        path = root / f"smollm2-onnx-{quant}"
        if not (path / "edgekit.json").is_file() or not read_manifest(path).graph_rewrites:  # made before the rewrite
            source = source or smollm2_hf_folder()
            print(f"exporting {path.name} ...", file=sys.stderr)
            edgekit.export_onnx(source, path, quant="none" if quant == "fp32" else quant, force=True)
        out.append(path)
    try:
        export_gguf = edgekit.export_gguf
    except (AttributeError, ImportError):
        export_gguf = None
        print("edgekit.export_gguf is not available: GGUF f16/q8_0/q4_k_m skipped", file=sys.stderr)
    if export_gguf is not None:
        for quant in ("f16", "q8_0", "q4_k_m"):
            path = root / f"smollm2-gguf-{quant}"
            if not (path / "edgekit.json").is_file():
                source = source or smollm2_hf_folder()
                print(f"exporting {path.name} ...", file=sys.stderr)
                export_gguf(source, path, quant=quant, force=True)
            out.append(path)
    out.append(smollm2_gguf_path())
    return out


def raw(path: Path, fmt: str, threads: int, prompt: int, gen: int, runs: int) -> dict[str, float]:
    """The raw library's decode loop, ``runs`` fresh processes; medians."""
    code = RAW_GGUF if fmt == "gguf" else RAW_ONNX
    model = str(path if path.suffix == ".gguf" or fmt == "onnx" else path / read_manifest(path).model_file)
    res = []
    for _ in range(runs):
        proc = subprocess.run([sys.executable, "-c", code, model, str(threads), str(prompt), str(gen), TEXT],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise SystemExit(f"raw {fmt} run of {path} failed: {proc.stderr[-800:]}")
        res.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in res) for k in ("prefill_tps", "decode_tps")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--targets", default="raspberry-pi-5,pixel-8,macbook-air-m2")
    ap.add_argument("--report", type=Path, default=None)
    args = ap.parse_args()
    root = cache_dir() / "bench-profiler"
    root.mkdir(parents=True, exist_ok=True)
    paths = artifacts(root)
    targets = [t for t in args.targets.split(",") if t]
    report = bench(paths, targets=targets, prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens,
                   runs=args.runs, warmup=args.warmup, threads=args.threads, progress=RichProgress())
    host = report.host
    threads = report.settings.threads
    rows, pred_rows = [], []
    for r in report.results:
        if r.decoder is None:
            print(f"{r.label}: {r.status} {r.error}", file=sys.stderr)
            continue
        base = raw(Path(r.path), r.format, threads, args.prompt_tokens, args.gen_tokens, args.runs)
        bytes_tok = r.shape.decode_bytes(args.prompt_tokens + args.gen_tokens // 2)
        roof = host.bandwidth_gbs(threads) * 1e9 / bytes_tok
        waits = sorted(x.cpu_wait_fraction for x in r.runs if x.ok and not x.warmup and x.cpu_wait_fraction is not None)
        d = r.decoder
        rows.append({
            "artifact": r.label, "format": r.format, "precision": r.precision, "size MB": f"{r.size_bytes / 1e6:.0f}",
            "MB read/token": f"{bytes_tok / 1e6:.0f}", "gate top1": f"{r.gate.value:.3f}" if r.gate and r.gate.value else "-",
            "peak RSS MB": f"{r.peak_rss_bytes.median / 1e6:.0f}",
            "decode tok/s": f"{d.decode_tps.median:.1f}", "raw tok/s": f"{base['decode_tps']:.1f}", "edgekit / raw": f"{d.decode_tps.median / base['decode_tps']:.2f}",
            "prefill tok/s": f"{d.prefill_tps.median:.0f}", "raw prefill": f"{base['prefill_tps']:.0f}",
            "BW roof tok/s": f"{roof:.0f}", "decode / roof": f"{d.decode_tps.median / roof:.2f}",
            "CPU wait": f"{waits[len(waits) // 2]:.0%}" if waits else "-",
        })
        for p in r.predictions:
            pred_rows.append({"artifact": r.label, "target": p.target, "threads": str(p.threads), "bound": p.bound,
                              "decode tok/s": f"{p.decode_tps:.1f}", "prefill tok/s": f"{p.prefill_tps:.0f}",
                              "memory MB": f"{p.memory_bytes / 1e6:.0f}", "fits": "yes" if p.fits else "NO"})
    out = args.report or root / "report"
    paths_written = write_report(report, out)
    print(f"host: {host.soc}, {threads} threads; copy bandwidth {host.bandwidth_gbs(threads):.1f} GB/s "
          f"({host.bandwidth_gbs(1):.1f} with 1 thread), fp32 {host.peak_gops('fp32', threads):.0f} GFLOP/s; "
          f"microbenchmark CPU wait {host.measurement_cpu_wait:.0%}")
    print()
    print(markdown_table(rows))
    print()
    print(markdown_table(pred_rows))
    print()
    print(f"chart: {paths_written['chart']}  table: {paths_written['markdown']}  json: {paths_written['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
