"""edgekit's runtime against the raw libraries, same machine, same run.

    .venv/bin/python benchmarks/runtime.py [--runs 5] [--threads 2] [--prompt-tokens 128] [--gen-tokens 128]

Prints, each as a median over --runs (edgekit and the raw library alternate run by run
so background load hits both alike):
  * GGUF decode tokens/s: edgekit (confidence on) / raw llama-cpp-python (its own sampler,
    no logprobs) — goal >= 0.97;
  * ONNX decoder tokens/s: edgekit / optimum ORTModelForCausalLM.generate on the same fp32
    export — goal >= 1.4; with the fraction of this machine's bandwidth limit
    (measured copy bandwidth / bytes of weights read per token), and the int8 and int4 exports;
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
from edgekit.manifest import cache_dir

TEXT = (
    "Edge devices run small language models close to the data. They answer everyday requests quickly, "
    "privately and cheaply, while a larger model in the cloud handles the rest. "
) * 40


def artifact(name: str, source: str, quantize: str) -> Path:
    path = cache_dir() / "bench" / name
    if not (path / "edgekit.json").is_file():
        print(f"exporting {name} ...", file=sys.stderr)
        edgekit.export_onnx(source, path, quantize=quantize, force=True)
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


def bench_onnx_decoder(args, path: Path, with_optimum: bool) -> dict:
    model = edgekit.load(path, threads=args.threads)
    ids = model.tokenize(TEXT)[: args.prompt_tokens]
    out = {"size_mb": sum(f.size for f in model.manifest.files if f.path.startswith("model.onnx")) / 1e6}
    ort_model = None
    if with_optimum:
        import onnxruntime as ort
        import torch
        from optimum.onnxruntime import ORTModelForCausalLM

        torch.set_num_threads(args.threads)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        ort_model = ORTModelForCausalLM.from_pretrained(path, file_name="model.onnx", session_options=opts, use_cache=True)
        inp = torch.tensor([ids])
    ek, opt = [], []
    for _ in range(args.runs + 1):
        r = model.generate_ids(ids, max_tokens=args.gen_tokens, ignore_eos=True)
        ek.append(r.timings.decode_tps)
        if ort_model is not None:
            t = time.perf_counter()
            ort_model.generate(inp, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            o = ort_model.generate(inp, max_new_tokens=args.gen_tokens, min_new_tokens=args.gen_tokens, do_sample=False)
            tn = time.perf_counter() - t
            assert o.shape[1] - len(ids) == args.gen_tokens
            opt.append((args.gen_tokens - 1) / (tn - t1))
    out["edgekit_tps"] = med(ek[1:])
    if opt:
        out["optimum_tps"] = med(opt[1:])
        out["ratio"] = out["edgekit_tps"] / out["optimum_tps"]
    model.close()
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

    fp32 = artifact("smollm2-fp32", "packaged:smollm2", "none")
    int8 = artifact("smollm2-int8", "packaged:smollm2", "int8")
    int4 = artifact("smollm2-int4", "packaged:smollm2", "int4")
    minilm = artifact("minilm-fp32", "packaged:minilm", "none")
    bw = bandwidth_gbs()
    res = {"threads": args.threads, "bandwidth_gbs": bw}
    res["gguf"] = bench_gguf(args, smollm2_gguf_path())
    res["onnx_fp32"] = bench_onnx_decoder(args, fp32, with_optimum=True)
    res["onnx_int8"] = bench_onnx_decoder(args, int8, with_optimum=False)
    res["onnx_int4"] = bench_onnx_decoder(args, int4, with_optimum=False)
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
    for name in ("onnx_int8", "onnx_int4"):
        r = res[name]
        print(f"| ONNX {name[5:]} decode tok/s ({r['size_mb']:.0f} MB) vs edgekit fp32 | {r['edgekit_tps']:.1f} | {o['edgekit_tps']:.1f} | {r['edgekit_tps'] / o['edgekit_tps']:.2f} | - |")
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
