"""The fused ONNX int4 choices side by side: size, gate KL / top-1 and decode speed (issue 12's Pareto table).

    .venv/bin/python benchmarks/int4_variants.py [--runs 3] [--threads 2] [--variants default,integer,...]
        [--source packaged:smollm2|native-like|DIR] [--runs 0]

Each variant is one ``QuantPlan`` of edgekit/exporters/onnx_fused (what ``default_plan("int4")`` picks, and the
alternatives it was picked from), built from the same SmolLM2 folder (``packaged:smollm2``) and gated against
transformers on the 20 built-in prompts with the bounds switched off (the gate only measures here). Speed: each
artifact in a fresh process per round, rounds in alternating order, ``edgekit.load(threads=N)``, a 400-token
prompt and 128 new tokens (ignore_eos), median of the rounds' decode and prefill tok/s.
Artifacts live in $EDGEKIT_CACHE/bench/int4-variants (rebuilt each run).

``--source native-like`` runs the same on SmolLM2 with every block moved off its 4-bit grid (benchmarks/
native_like.py), where a scheme that reproduces Q4_1's grid has no head start; the gate compares with that copy.
Two reference rows come from the same source and gate: llama.cpp's q4_k_m (what the 4-bit bounds are measured
against) and edgekit's ONNX int8. ``--runs 0`` measures size and quality only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, edgekit
from edgekit import GenerationConfig
m = edgekit.load(sys.argv[1], threads=int(sys.argv[2]))
prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * 40)
m.generate(prompt, GenerationConfig(max_tokens=4, ignore_eos=True, temperature=0))  # warm-up
r = m.generate(prompt, GenerationConfig(max_tokens=128, ignore_eos=True, temperature=0))
print(json.dumps([r.timings.decode_tps, r.timings.prefill_tps]))
"""


def plans(n_layers: int) -> dict:
    from edgekit.exporters.onnx_fused.build import QuantPlan
    from edgekit.exporters.onnx_fused.export import default_plan

    def integer(**kw):  # integer zero points, activation-weighted rounding (the calibration pass runs)
        return QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="search", **kw)

    def float_min_on(*kinds):
        return integer(methods={f"blk.{i}.{k}": "minmax" for i in range(n_layers) for k in kinds})

    # llama.cpp's use_more_bits layers (the first and last eighth, every third between): q4_k_m's 8-bit mix
    more = [i for i in range(n_layers) if i < n_layers // 8 or i >= 7 * n_layers // 8 or (i - n_layers // 8) % 3 == 2]
    wide = {f"blk.{i}.{m}": 8 for i in more for m in ("ffn_down", "attn_qkv")}
    down_all = {f"blk.{i}.ffn_down": 8 for i in range(n_layers)}
    return {
        "default": lambda: default_plan("int4"),
        "float-min-no-attn-output": lambda: float_min_on("ffn_down", "ffn_gate_up", "attn_qkv"),
        "float-min-mlp": lambda: float_min_on("ffn_down", "ffn_gate_up"),
        "float-min-4bit-output": lambda: QuantPlan(default_bits=4, head_bits=4, embed_bits=4, method="minmax"),
        "integer-8bit-mix": lambda: integer(bits=wide),
        "integer": lambda: integer(),
        "integer-rtn": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="rtn"),
        "integer-4bit-output": lambda: QuantPlan(default_bits=4, head_bits=4, embed_bits=4, method="search"),
        # 8 bits for the layer matrices whose 4-bit rounding costs most (calib.sensitive_matrices), this share
        "integer-sensitive-20": lambda: integer(sensitive=0.2),
        "integer-sensitive-30": lambda: integer(sensitive=0.3),
        "float-min-sensitive-20": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="minmax",
                                                    sensitive=0.2),
        # GPTQ (nbits._gptq): rounding errors corrected through the inputs' second moments
        "gptq": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="gptq"),
        "gptq-sensitive-20": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="gptq", sensitive=0.2),
        "gptq-sensitive-30": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="gptq", sensitive=0.3),
        "gptq-8bit-mix": lambda: QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="gptq", bits=wide),
        "integer-8bit-down-mix": lambda: integer(bits={**wide, **down_all}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="all", help="comma-separated names (default: all)")
    ap.add_argument("--source", default="packaged:smollm2", help="packaged:smollm2, native-like or an HF folder")
    ap.add_argument("--no-reference", action="store_true", help="skip the q4_k_m and int8 rows")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import native_like

    from edgekit.exporters.onnx_fused.export import export_fused
    from edgekit.fileio import cache_dir
    from edgekit.quality import load_prompts
    from edgekit.sources import resolve_source

    src = resolve_source(str(native_like.resolve(args.source)))
    table = plans(int(src.config["num_hidden_layers"]))
    names = list(table) if args.variants == "all" else args.variants.split(",")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}: choose from {', '.join(table)}")
    root = cache_dir() / "bench" / "int4-variants" / args.source.replace(":", "-").replace("/", "_")
    rows: dict[str, dict] = {}
    off = {"kl_mean": float("inf"), "kl_max": float("inf"), "top1": 0.0}  # measure only
    refs = [] if args.no_reference else ["ref-gguf-q4_k_m", "ref-onnx-int8"]
    for name in refs:
        print(f"export {name} ...", file=sys.stderr, flush=True)
        if name == "ref-gguf-q4_k_m":
            from edgekit.exporters.gguf import export_gguf

            art = export_gguf(str(src.path), root / name, quant="q4_k_m", force=True, thresholds=off)
            size = sum(f.stat().st_size for f in (root / name).glob("*.gguf"))
        else:
            art = export_fused(src, root / name, precision="int8", prompts=load_prompts(None), force=True,
                               thresholds=off)
            size = sum(f.stat().st_size for f in (root / name).glob("model.onnx*"))
        rows[name] = {"size_mb": size / 1e6, **art.manifest.gate.metrics, "decode": [], "prefill": []}
    for name in names:
        print(f"export {name} ...", file=sys.stderr, flush=True)
        art = export_fused(src, root / name, precision="int4", prompts=load_prompts(None), force=True,
                           thresholds=off, plan=table[name]())
        size = sum(f.stat().st_size for f in (root / name).glob("model.onnx*"))
        rows[name] = {"size_mb": size / 1e6, **art.manifest.gate.metrics, "decode": [], "prefill": []}
    every = refs + names
    for r in range(args.runs):
        for name in (every if r % 2 == 0 else every[::-1]):
            p = subprocess.run([sys.executable, "-c", CHILD, str(root / name), str(args.threads)],
                               capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"{name}: {p.stderr[-2000:]}")
            decode, prefill = json.loads(p.stdout.strip().splitlines()[-1])
            rows[name]["decode"].append(decode)
            rows[name]["prefill"].append(prefill)
    def med(xs):
        return statistics.median(xs) if xs else float("nan")

    base = med(rows[names[0]]["decode"])
    q4 = rows.get("ref-gguf-q4_k_m")
    print(f"\nSmolLM2-135M int4 variants on {args.source}, {args.threads} threads, median of {args.runs} "
          "fresh-process rounds\n")
    print(f"| variant | size MB | KL mean | KL max | top-1 | KL / q4_k_m's | size / q4_k_m's | decode tok/s "
          f"| vs {names[0]} | prefill tok/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in every:
        row = rows[name]
        d = med(row["decode"])
        vs_q4 = (f"{row['kl_mean'] / q4['kl_mean']:.2f} | {row['size_mb'] / q4['size_mb']:.2f}" if q4 else "- | -")
        print(f"| {name} | {row['size_mb']:.1f} | {row['kl_mean']:.3f} | {row['kl_max']:.2f} | {row['top1']:.3f} "
              f"| {vs_q4} | {d:.1f} | {d / base:.2f} | {med(row['prefill']):.0f} |")


if __name__ == "__main__":
    main()
