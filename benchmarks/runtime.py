"""edgekit's runtime against the raw libraries, same machine, same run.

    .venv/bin/python benchmarks/runtime.py [--runs 5] [--threads 2] [--prompt-tokens 128] [--gen-tokens 128]

Prints, each as a median over --runs (edgekit and the raw library alternate so background
load hits both alike; the ONNX decoders run each side in fresh processes, 3 runs per process
after a warm-up, since torch's spinning OpenMP threads would slow whatever runs next):
  * GGUF decode tokens/s: edgekit (confidence on) / raw llama-cpp-python (its own sampler,
    no logprobs) — goal >= 0.97;
  * ONNX decoder tokens/s: edgekit / optimum ORTModelForCausalLM.generate on the same fp32
    export — goal >= 1.4; with the fraction of this machine's bandwidth limit
    (measured copy bandwidth / bytes of weights read per token), and the int8 and int4 exports.
    Both on edgekit's export (attention rewritten to read the KV cache without repeat_kv
    copies) and on the graph as optimum traced it (--no-optimize), so the loop's share and
    the graph's share of the difference show separately;
  * MiniLM embeddings/s at batch 32: edgekit / a raw onnxruntime session — goal >= 0.97;
  * cold `import edgekit` + load of an ONNX artifact in a fresh process: seconds and peak RSS.
Artifacts are exported once into ~/.cache/edgekit/bench (or $EDGEKIT_CACHE/bench).
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

import numpy as np

import edgekit
from edgekit.fileio import cache_dir
from edgekit.manifest import read_manifest

TEXT = (
    "Edge devices run small language models close to the data. They answer everyday requests quickly, "
    "privately and cheaply, while a larger model in the cloud handles the rest. "
) * 40


def artifact(name: str, source: str, quantize: str, optimize: bool | None = None, via: str = "auto") -> Path:
    """Export once into the cache; ``optimize`` (traced decoders) re-exports a cached one made the other way.

    ``via="optimum"`` is the traced graph optimum's ORTModelForCausalLM runs; ``via="fused"`` edgekit's
    fused decoder graph (only edgekit and onnxruntime-genai run it).
    """
    path = cache_dir() / "bench" / name
    fresh = (path / "edgekit.json").is_file() and (
        optimize is None or bool(read_manifest(path).graph_rewrites) == optimize)
    if not fresh:
        print(f"exporting {name} ...", file=sys.stderr)
        edgekit.export_onnx(source, path, quant=quantize, force=True, optimize=optimize is not False, via=via)
    return path


def med(xs):
    return statistics.median(xs)


def bandwidth_gbs() -> float:
    a = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        dt = time.perf_counter() - t
        best = max(best, 2 * a.nbytes / dt / 1e9)  # read + write
    return best


def bench_gguf(args, gguf: Path) -> dict:
    from llama_cpp import Llama

    model = edgekit.load(gguf, threads=args.threads, context=1024)
    ids = model.tokenize(TEXT)[: args.prompt_tokens]
    raw = Llama(str(gguf), n_ctx=1024, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    ek, rw = [], []

    def edgekit_run():
        ek.append(model.generate_ids(ids, max_tokens=args.gen_tokens, ignore_eos=True).timings.decode_tps)

    def raw_run():
        raw.reset()
        t_first, n = None, 0
        for _tok in raw.generate(ids, temp=0.0, reset=True):
            n += 1
            if n == 1:
                t_first = time.perf_counter()
            if n == args.gen_tokens:
                break
        rw.append((n - 1) / (time.perf_counter() - t_first))

    for i in range(2 * args.runs + 1):  # cheap runs: twice as many, to steady the median
        for run in ((edgekit_run, raw_run) if i % 2 else (raw_run, edgekit_run)):  # alternate who goes first
            run()
    ek, rw = ek[1:], rw[1:]  # first round is warm-up
    model.close()
    raw.close()
    return {"edgekit_tps": med(ek), "raw_tps": med(rw), "ratio": med(ek) / med(rw)}


EDGEKIT_DECODE = r"""
import json, statistics, sys
import edgekit
path, threads, P, G, runs, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
model = edgekit.load(path, threads=threads)
ids = model.tokenize(text)[:P]
tps = [model.generate_ids(ids, max_tokens=G, ignore_eos=True).timings.decode_tps for _ in range(runs + 1)]
print(json.dumps({"tps": statistics.median(tps[1:]), "torch_loaded": "torch" in sys.modules}))
"""

OPTIMUM_DECODE = r"""
import json, statistics, sys, time
import onnxruntime as ort, torch
from optimum.onnxruntime import ORTModelForCausalLM
from tokenizers import Tokenizer
path, threads, P, G, runs, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
opts = ort.SessionOptions(); opts.intra_op_num_threads = threads; opts.inter_op_num_threads = 1
model = ORTModelForCausalLM.from_pretrained(path, file_name="model.onnx", session_options=opts, use_cache=True)
ids = Tokenizer.from_file(path + "/tokenizer.json").encode(text).ids[:P]
inp = torch.tensor([ids]); mask = torch.ones_like(inp)
tps = []
for _ in range(runs + 1):
    t = time.perf_counter(); model.generate(inp, attention_mask=mask, max_new_tokens=1, min_new_tokens=1, do_sample=False); t1 = time.perf_counter() - t
    t = time.perf_counter(); o = model.generate(inp, attention_mask=mask, max_new_tokens=G, min_new_tokens=G, do_sample=False); tn = time.perf_counter() - t
    assert o.shape[1] - len(ids) == G
    tps.append((G - 1) / (tn - t1))
print(json.dumps({"tps": statistics.median(tps[1:])}))
"""


def _worker(code: str, path: Path, args, runs: int) -> dict:
    cmd = [sys.executable, "-c", code, str(path), str(args.threads), str(args.prompt_tokens), str(args.gen_tokens), str(runs), TEXT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker failed on {path}: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_onnx_decoder(args, path: Path, with_optimum: bool) -> dict:
    """Decode tokens/s; each side in its own fresh processes, alternating, so neither library's
    thread pool (torch's OpenMP threads keep spinning after optimum's generate) slows the other."""
    out = {"size_mb": sum(f.size for f in read_manifest(path).files if f.path.startswith("model.onnx")) / 1e6}
    per_proc = 3
    rounds = max(1, -(-args.runs // per_proc))
    ek, opt = [], []
    for _ in range(rounds):
        r = _worker(EDGEKIT_DECODE, path, args, per_proc)
        assert not r["torch_loaded"], "the edgekit runtime imported torch"
        ek.append(r["tps"])
        if with_optimum:
            opt.append(_worker(OPTIMUM_DECODE, path, args, per_proc)["tps"])
    out["edgekit_tps"] = med(ek)
    if opt:
        out["optimum_tps"] = med(opt)
        out["ratio"] = out["edgekit_tps"] / out["optimum_tps"]
    return out


def bench_embed(args, path: Path) -> dict:
    import onnxruntime as ort

    from tokenizers import Tokenizer

    model = edgekit.load(path, threads=args.threads)
    texts = [TEXT[i * 37 : i * 37 + 160] for i in range(32)]
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(256)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def raw_once():  # what a user of the raw libraries writes: tokenize, run, mean-pool, normalise
        encs = tok.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        (h,) = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        m = mask[..., None].astype(np.float32)
        v = (h * m).sum(1) / m.sum(1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ek, rw = [], []
    for _ in range(args.runs * 3 + 1):
        t = time.perf_counter()
        model.embed(texts, batch_size=32)
        ek.append(32 / (time.perf_counter() - t))
        t = time.perf_counter()
        raw_once()
        rw.append(32 / (time.perf_counter() - t))
    model.close()
    return {"edgekit_per_s": med(ek[1:]), "raw_per_s": med(rw[1:]), "ratio": med(ek[1:]) / med(rw[1:])}


def cold_start(path: Path) -> dict:
    # VmHWM, not ru_maxrss: a child's ru_maxrss inherits the high-water mark of the (large)
    # benchmark process that spawned it, VmHWM starts afresh at exec
    code = (
        "import time; t = time.perf_counter()\n"
        "import edgekit\n"
        f"m = edgekit.load({str(path)!r})\n"
        "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "print(time.perf_counter() - t, hwm)\n"
    )
    edgekit.load(path).close()  # hashes verified once; the stamp makes later loads skip re-hashing
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        runs.append((float(out[0]), int(out[1]) / 1024))
    return {"seconds": med([r[0] for r in runs]), "peak_rss_mb": med([r[1] for r in runs])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from edgekit.packaged import smollm2_gguf_path

    fp32 = artifact("smollm2-fp32-optimum", "packaged:smollm2", "none", optimize=True, via="optimum")
    traced = artifact("smollm2-fp32-traced", "packaged:smollm2", "none", optimize=False, via="optimum")
    int8 = artifact("smollm2-int8-optimum", "packaged:smollm2", "int8", optimize=True, via="optimum")
    int4 = artifact("smollm2-int4-optimum", "packaged:smollm2", "int4", optimize=True, via="optimum")
    fused = {q: artifact(f"smollm2-{q}-fused", "packaged:smollm2", q, via="fused") for q in ("none", "int8", "int4")}
    minilm = artifact("minilm-fp32", "packaged:minilm", "none")
    bw = bandwidth_gbs()
    res = {"threads": args.threads, "bandwidth_gbs": bw}
    res["gguf"] = bench_gguf(args, smollm2_gguf_path())
    res["onnx_fp32"] = bench_onnx_decoder(args, fp32, with_optimum=True)
    res["onnx_fp32_traced"] = bench_onnx_decoder(args, traced, with_optimum=True)
    res["onnx_int8"] = bench_onnx_decoder(args, int8, with_optimum=False)
    res["onnx_int4"] = bench_onnx_decoder(args, int4, with_optimum=False)
    for q, path in fused.items():
        res[f"fused_{q}"] = bench_onnx_decoder(args, path, with_optimum=False)
    res["embed"] = bench_embed(args, minilm)
    res["cold_start"] = cold_start(int8)

    limit = bw * 1e9 / (res["onnx_fp32"]["size_mb"] * 1e6)
    print(f"\nedgekit runtime benchmark: {args.threads} threads, {args.prompt_tokens} prompt + {args.gen_tokens} new tokens, "
          f"median of {args.runs} runs; host copy bandwidth {bw:.1f} GB/s\n")
    print("| measurement | edgekit | raw library | ratio | goal |\n|---|---|---|---|---|")
    g = res["gguf"]
    print(f"| GGUF Q4_1 decode tok/s (confidence on) vs llama-cpp-python | {g['edgekit_tps']:.1f} | {g['raw_tps']:.1f} | {g['ratio']:.3f} | >= 0.97 |")
    o = res["onnx_fp32"]
    print(f"| ONNX fp32 decode tok/s vs optimum ORTModelForCausalLM | {o['edgekit_tps']:.1f} | {o['optimum_tps']:.1f} | {o['ratio']:.2f} | >= 1.4 |")
    t = res["onnx_fp32_traced"]
    print(f"| same, on the graph as optimum traced it (--no-optimize) | {t['edgekit_tps']:.1f} | {t['optimum_tps']:.1f} | {t['ratio']:.2f} | - |")
    print(f"| edgekit on its export vs optimum on the traced graph | {o['edgekit_tps']:.1f} | {t['optimum_tps']:.1f} | {o['edgekit_tps'] / t['optimum_tps']:.2f} | - |")
    for name in ("onnx_int8", "onnx_int4"):
        r = res[name]
        print(f"| ONNX {name[5:]} decode tok/s ({r['size_mb']:.0f} MB) vs edgekit fp32 | {r['edgekit_tps']:.1f} | {o['edgekit_tps']:.1f} | {r['edgekit_tps'] / o['edgekit_tps']:.2f} | - |")
    for q, traced_name in (("none", "onnx_fp32"), ("int8", "onnx_int8"), ("int4", "onnx_int4")):
        r, t = res[f"fused_{q}"], res[traced_name]
        label = "fp32" if q == "none" else q
        print(f"| fused {label} decode tok/s ({r['size_mb']:.0f} MB) vs the traced {label} export | {r['edgekit_tps']:.1f} | "
              f"{t['edgekit_tps']:.1f} | {r['edgekit_tps'] / t['edgekit_tps']:.2f} | - |")
    e = res["embed"]
    print(f"| MiniLM embeddings/s, batch 32, vs raw onnxruntime session | {e['edgekit_per_s']:.0f} | {e['raw_per_s']:.0f} | {e['ratio']:.3f} | >= 0.97 |")
    c = res["cold_start"]
    print(f"\nfp32 decode bandwidth limit: {bw:.1f} GB/s / {o['size_mb']:.0f} MB per token = {limit:.0f} tok/s; "
          f"edgekit reaches {o['edgekit_tps'] / limit:.0%} of it")
    print(f"cold 'import edgekit' + load of the int8 ONNX artifact in a fresh process: {c['seconds']:.2f} s, peak RSS {c['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
