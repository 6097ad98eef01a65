"""How close the profiler's predictions come to measurements: this host at 1 thread, and published device figures.

Accuracy claims depend on the machine and on what else it is running, so they live here and
not in the test suite (the suite checks the prediction's arithmetic on recorded calibrations).

    .venv/bin/python benchmarks/predict_accuracy.py                 # measure, calibrate, print both tables
    .venv/bin/python benchmarks/predict_accuracy.py --record DIR    # also save the host profile and runs there

``--record tests/profiler/data`` refreshes the recorded calibration inputs the tests use.
What it prints:

1. The host's own 1-thread decode and prefill, predicted from a 2-thread calibration, against
   a fresh 1-thread measurement (per backend), with the runs' CPU wait (a busy host reads high).
2. Every published llama.cpp measurement in the presets against the prediction from this host's
   2-thread calibration: predicted / published and the preset's tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

P_TOKENS, G_TOKENS = 128, 40


def _measure(path, threads, host, runs):
    from edgekit.profiler import bench

    report = bench([path], threads=threads, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=runs, warmup=1,
                   host=host)
    result = report.results[0]
    if result.status != "ok":
        sys.exit(f"bench of {path} failed: {result.error}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--record", type=Path, help="folder to save host.toml and runs.json in (the tests' inputs)")
    args = ap.parse_args()

    from edgekit.packaged import smollm2_gguf_path
    from edgekit.profiler.roofline import predict
    from edgekit.profiler.shape import shape_from_params
    from edgekit.targets import load_preset, preset_names
    from edgekit.targets.detect import detect
    from edgekit.targets.profile import profile_to_toml

    host = detect()
    print(f"host: {host.name} ({host.soc or host.arch}), bandwidth {host.memory_bandwidth_gbs.value:.1f} GB/s, "
          f"fp32 {host.peak_gflops_fp32.value:.0f} GFLOP/s, microbenchmark CPU wait {host.measurement_cpu_wait:.0%}")
    artifacts = {"llama.cpp": smollm2_gguf_path()}
    onnx = os.environ.get("EDGEKIT_ONNX_DECODER")
    if onnx:
        artifacts["onnx"] = Path(onnx)
    recorded, rows = {}, []
    cal_gguf = None
    for backend, path in artifacts.items():
        two = _measure(path, 2, host, args.runs)
        one = _measure(path, 1, host, args.runs)
        cal = two.calibration
        if backend == "llama.cpp":
            cal_gguf = cal
        pred = predict(two.shape, host, cal, threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
        m_dec, m_pre = one.decoder.decode_tps.median, one.decoder.prefill_tps.median
        rows.append((backend, pred.decode_tps, m_dec, pred.prefill_tps, m_pre, cal.cpu_wait_fraction,
                     one.calibration.cpu_wait_fraction))
        recorded[backend] = {
            "two_threads": {
                "artifact": two.label, "shape": two.shape.model_dump(mode="json"), "threads": 2,
                "forward_s": cal.forward_s, "token_latency_s": cal.forward_s + cal.token_overhead_s,
                "decode_position": cal.decode_position, "prompt_tokens": two.decoder.prompt_tokens,
                "prefill_s": two.decoder.prompt_tokens / two.decoder.prefill_tps.median,
                "cpu_wait_fraction": cal.cpu_wait_fraction,
            },
            "one_thread_measured": {"decode_tps": m_dec, "prefill_tps": m_pre},
        }

    print("\n1-thread prediction from the 2-thread calibration (this host)")
    print("| backend | decode pred | decode measured | error | prefill pred | prefill measured | error | CPU wait 2t/1t |")
    print("|---|---|---|---|---|---|---|---|")
    for b, pd, md, pp, mp, w2, w1 in rows:
        print(f"| {b} | {pd:.1f} | {md:.1f} | {pd / md - 1:+.0%} | {pp:.0f} | {mp:.0f} | {pp / mp - 1:+.0%} | "
              f"{(w2 or 0):.0%} / {(w1 or 0):.0%} |")

    print("\nPublished llama.cpp measurements against the prediction from this host's calibration")
    print("| target | model | what | published | predicted | ratio | tolerance |")
    print("|---|---|---|---|---|---|---|")
    for name in preset_names():
        target = load_preset(name)
        for run in target.published:
            shape = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                                      head_dim=run.head_dim,
                                      untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                                      output_params=int(run.output_params_b * 1e9))
            p = predict(shape, target, cal_gguf, threads=run.threads, prompt_tokens=run.prefill_tokens or 128,
                        gen_tokens=128)
            for what, pub, pred, tol in (("decode", run.decode_tps, p.decode_tps, run.decode_tolerance),
                                         ("prefill", run.prefill_tps, p.prefill_tps, run.prefill_tolerance)):
                if pub is None:
                    continue
                flag = "" if abs(pred / pub - 1) <= tol else " (outside)"
                print(f"| {name} | {run.model} | {what} | {pub} | {pred:.2f} | {pred / pub:.2f}x{flag} | {tol:.0%} |")

    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / "host.toml").write_text(profile_to_toml(host))
        (args.record / "runs.json").write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"\nrecorded {args.record / 'host.toml'} and {args.record / 'runs.json'}")


if __name__ == "__main__":
    main()
