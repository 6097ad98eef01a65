"""How close the profiler's predictions come to measurements, and how much they depend on the calibration.

Accuracy claims depend on the machine and on what else it is running, so they live here and
not in the test suite (the suite checks the prediction's arithmetic on recorded calibrations).

    .venv/bin/python benchmarks/predict_accuracy.py                # measure, calibrate four ways, print the tables
    .venv/bin/python benchmarks/predict_accuracy.py --record DIR   # also save the host profile and runs there
    .venv/bin/python benchmarks/predict_accuracy.py --recorded DIR # the tables from a recorded folder, no measuring

``--record tests/profiler/data`` refreshes the recorded calibration inputs the tests use.
It benches the packaged SmolLM2 GGUF (and the ONNX decoder in $EDGEKIT_ONNX_DECODER, if set)
four ways: 1 and 2 threads, each with the host as it is and busy (two CPU hogs,
``python -c "while True: pass"``, running through the bench and its calibration run), and
prints:

1. The calibrations: the bench's threads and CPU wait, the timing basis the calibration used
   (``cpu``: CPU time of a one-thread run, bench.py's way; ``wall``: the clock of a quiet run),
   efficiency and overheads. Beside them, for comparison, the wall-clock calibration of the quiet
   2-thread run recorded on 2026-11-30 (benchmarks/data: what the profiler calibrated on before).
2. This host's own speeds predicted by each calibration: 1 thread against the 1-thread CPU-time
   measurement (what the host does when nothing else runs), 2 threads against the quiet 2-thread
   run of 2026-11-30 on that day's host profile (a busy host has no 2-thread truth to compare with).
3. Every published llama.cpp measurement in the presets: the prediction from the 1-thread
   calibration, its error and tolerance, and the spread of the prediction over the four
   calibrations (largest / smallest - 1), then how far the recorded wall-clock calibration lands.
   The spread over host kinds cannot be measured on one host kind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

P_TOKENS, G_TOKENS = 128, 40
QUIET_RECORD = ROOT / "benchmarks" / "data" / "quiet_two_threads_2026-11-30.json"
CASES = (("1t", 1, False), ("1t-busy", 1, True), ("2t", 2, False), ("2t-busy", 2, True))


@contextlib.contextmanager
def hogs(n: int):
    """``n`` processes spinning on a CPU for as long as the block runs (only these, by pid, are ended)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _percentile(values, q):
    import numpy as np

    return float(np.percentile(values, q))


def measure_case(path, threads, busy, host, runs):
    """One bench; return (the calibration's inputs, the host measurements of the runs)."""
    from edgekit.profiler import bench

    with hogs(2 if busy else 0):
        report = bench([path], threads=threads, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=runs, warmup=1,
                       host=host)
    result = report.results[0]
    if result.status != "ok" or result.calibration is None:
        sys.exit(f"bench of {path} failed: {result.error}")
    cal, shape = result.calibration, result.shape
    prefill_s = shape.prefill_flops(P_TOKENS) / (cal.prefill_efficiency * cal.host_peak_gops * 1e9)
    inputs = {"threads": cal.threads, "timing": cal.timing, "forward_s": cal.forward_s,
              "token_latency_s": cal.forward_s + cal.token_overhead_s, "decode_position": cal.decode_position,
              "prompt_tokens": P_TOKENS, "prefill_s": prefill_s, "busy": busy, "bench_threads": threads,
              "cpu_wait_fraction": max((r.cpu_wait_fraction or 0.0) for r in result.runs if r.ok and not r.warmup)}
    data = [r.measurements for r in result.runs if r.ok and not r.warmup]
    measured = {"decode_tps": result.decoder.decode_tps.median, "prefill_tps": result.decoder.prefill_tps.median,
                "cpu_wait_fraction": inputs["cpu_wait_fraction"]}
    if threads == 1:  # the busy-proof truth of this host at one thread: CPU times, as the calibration reads them
        fwd = [x for d in data for x in d["decode_forward_cpu_s"]]
        loop = [x for d in data for x in d["token_loop_cpu_s"]]
        measured["decode_tps_cpu"] = 1 / (_percentile(fwd, 25) + _percentile(loop, 50))
        measured["prefill_tps_cpu"] = P_TOKENS / min(d["prefill_cpu_s"] for d in data)
    return inputs, measured, shape, result.label


def calibration_of(shape, host, artifact, inputs):
    from edgekit.profiler.roofline import calibrate

    return calibrate(shape, host, threads=inputs["threads"], artifact=artifact, measured_at="recorded",
                     timing=inputs["timing"], forward_s=inputs["forward_s"], token_latency_s=inputs["token_latency_s"],
                     decode_position=inputs["decode_position"], prefill_s=inputs["prefill_s"],
                     prompt_tokens=inputs["prompt_tokens"])


def quiet_record(host):
    """The quiet 2-thread run of 2026-11-30 (wall clock, 3% CPU wait) with that day's host profile. That profile
    predates the 256-bit measurement: its 256-bit rates are its fp32 rates scaled by today's 256/512 ratio."""
    from edgekit.profiler.shape import ModelShape, compute_kind
    from edgekit.targets.profile import Sourced, parse_profile

    rec = json.loads(QUIET_RECORD.read_text())
    old = dict(rec["host"])
    if host.single_thread_gflops_fp32_256 is not None and host.single_thread_gflops_fp32 is not None:
        ratio = host.single_thread_gflops_fp32_256.value / host.single_thread_gflops_fp32.value
        note = f"estimated: fp32 x {ratio:.2f} (256/512-bit ratio measured today)"
        old["peak_gflops_fp32_256"] = Sourced(value=old["peak_gflops_fp32"]["value"] * ratio, source=note).model_dump()
        old["single_thread_gflops_fp32_256"] = Sourced(value=old["single_thread_gflops_fp32"]["value"] * ratio,
                                                       source=note).model_dump()
    old_host = parse_profile(old, str(QUIET_RECORD))
    shape = ModelShape.model_validate(rec["shape"])
    shape = shape.model_copy(update={"compute": compute_kind(shape.quant)})  # recorded before the "quant" kind
    return old_host, shape, rec["inputs"], rec["measured"]


def published_rows():
    from edgekit.profiler.shape import shape_from_params
    from edgekit.targets import load_preset, preset_names

    for name in preset_names():
        target = load_preset(name)
        for run in target.published:
            shape = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                                      head_dim=run.head_dim,
                                      untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                                      output_params=int(run.output_params_b * 1e9))
            yield target, run, shape


def print_tables(host, recorded: dict, quiet=None) -> None:
    from edgekit.profiler.roofline import predict
    from edgekit.profiler.shape import ModelShape

    for backend, rec in recorded.items():
        shape = ModelShape.model_validate(rec["shape"])
        cals = {case: calibration_of(shape, host, rec["artifact"], inputs) for case, inputs in rec["calibrations"].items()}
        if backend == "llama.cpp" and quiet is not None:
            old_host, old_shape, old_inputs, old_measured = quiet
            cals["2t-quiet-rec"] = calibration_of(old_shape, old_host, rec["artifact"], old_inputs)
        print(f"\n## {backend}: {rec['artifact']}\n")
        print("| calibration | bench threads | CPU wait | timing | calibrated threads | prefill eff. | compute eff. "
              "| layer overhead | token overhead |")
        print("|---|---|---|---|---|---|---|---|---|")
        for case, cal in cals.items():
            inp = rec["calibrations"].get(case) or {"bench_threads": 2, "cpu_wait_fraction": cal.cpu_wait_fraction}
            print(f"| {case} | {inp['bench_threads']} | {inp['cpu_wait_fraction'] or 0:.0%} | {cal.timing} | "
                  f"{cal.threads} | {cal.prefill_efficiency:.3f} | {cal.compute_efficiency:.3f} | "
                  f"{cal.layer_overhead_s * 1e6:.0f} us | {cal.token_overhead_s * 1e6:.0f} us |")

        m1 = rec["measured"]["1"]
        print("\nThis host predicted by each calibration: 1 thread against today's 1-thread CPU-time measurement, "
              "2 threads against the quiet 2-thread run of 2026-11-30 (on that day's host profile)")
        print("| calibration | 1t decode | meas. | err | 1t prefill | meas. | err | 2t decode | meas. | err "
              "| 2t prefill | meas. | err |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for case, cal in cals.items():
            cells = []
            for n, h, (dm, pm) in ((1, host, (m1["decode_tps_cpu"], m1["prefill_tps_cpu"])),
                                   (2, quiet[0] if quiet else None,
                                    (quiet[3]["decode_tps"], quiet[3]["prefill_tps"]) if quiet else (None, None))):
                if h is None or (n == 2 and backend != "llama.cpp"):  # the quiet record is llama.cpp's
                    cells += ["-"] * 6
                    continue
                p = predict(shape, h, cal, threads=n, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
                cells += [f"{p.decode_tps:.0f}", f"{dm:.0f}", f"{p.decode_tps / dm - 1:+.0%}",
                          f"{p.prefill_tps:.0f}", f"{pm:.0f}", f"{p.prefill_tps / pm - 1:+.0%}"]
            print(f"| {case} | " + " | ".join(cells) + " |")
        if backend != "llama.cpp":
            continue

        design = [c for c in cals if c in rec["calibrations"]]
        print("\nPublished llama.cpp measurements: the prediction from the 1-thread calibration; its spread over the "
              f"calibrations {', '.join(design)} (largest / smallest - 1); the recorded 2-thread wall-clock "
              "calibration's prediction relative to it")
        print("| target | model | quant | what | published | predicted | error | tolerance | bound | spread "
              "| 2t wall (rec.) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        worst = 0.0
        for target, run, s in published_rows():
            preds = {case: predict(s, target, cal, threads=run.threads, prompt_tokens=run.prefill_tokens or 128,
                                   gen_tokens=128) for case, cal in cals.items()}
            p = preds["1t"]
            for what, pub, tol, attr in (("decode", run.decode_tps, run.decode_tolerance, "decode_tps"),
                                         ("prefill", run.prefill_tps, run.prefill_tolerance, "prefill_tps")):
                if pub is None:
                    continue
                pred = getattr(p, attr)
                values = [getattr(preds[c], attr) for c in design]
                spread = max(values) / min(values) - 1
                worst = max(worst, spread)
                old = (f"{getattr(preds['2t-quiet-rec'], attr) / pred - 1:+.0%}" if "2t-quiet-rec" in preds else "-")
                flag = "" if abs(pred / pub - 1) <= tol else " (outside)"
                print(f"| {target.name} | {run.model} | {run.quant} | {what} | {pub:g} | {pred:.2f} | "
                      f"{pred / pub - 1:+.0%}{flag} | {tol:.0%} | {p.bound if what == 'decode' else '-'} | "
                      f"{spread:.1%} | {old} |")
        print(f"\nlargest spread over the calibrations {', '.join(design)}: {worst:.1%} (target: under 15%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--record", type=Path, help="folder to save host.toml and runs.json in (the tests' inputs)")
    ap.add_argument("--recorded", type=Path, help="print the tables from a recorded folder instead of measuring")
    args = ap.parse_args()

    from edgekit.packaged import smollm2_gguf_path
    from edgekit.targets.detect import detect
    from edgekit.targets.profile import load_profile_file, profile_to_toml

    if args.recorded:
        host = load_profile_file(args.recorded / "host.toml")
        recorded = json.loads((args.recorded / "runs.json").read_text())
    else:
        host = detect()
        artifacts = {"llama.cpp": smollm2_gguf_path()}
        if os.environ.get("EDGEKIT_ONNX_DECODER"):
            artifacts["onnx"] = Path(os.environ["EDGEKIT_ONNX_DECODER"])
        recorded = {}
        for backend, path in artifacts.items():
            rec = {"calibrations": {}, "measured": {}}
            for case, threads, busy in CASES:
                inputs, measured, shape, label = measure_case(path, threads, busy, host, args.runs)
                rec["calibrations"][case] = inputs
                if not busy:
                    rec["measured"][str(threads)] = measured
                rec["shape"], rec["artifact"] = shape.model_dump(mode="json"), label
            recorded[backend] = rec
    f256 = host.single_thread_gflops_fp32_256
    print(f"host: {host.name} ({host.soc or host.arch}), bandwidth {host.bandwidth_gbs(1):.1f} / "
          f"{host.memory_bandwidth_gbs.value:.1f} GB/s (1 / {host.threads} threads), fp32 "
          f"{host.peak_gops('fp32', 1):.0f} GFLOP/s per core at full width, "
          f"{f256.value if f256 else host.peak_gops('fp32', 1):.0f} at 256 bits, int8 {host.peak_gops('int8', 1):.0f} "
          f"GOP/s per core; microbenchmark CPU wait {host.measurement_cpu_wait or 0:.0%}")
    quiet = quiet_record(host) if QUIET_RECORD.is_file() else None
    print_tables(host, recorded, quiet)
    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
        (args.record / "host.toml").write_text(profile_to_toml(host))
        (args.record / "runs.json").write_text(json.dumps(recorded, indent=1) + "\n")
        print(f"\nrecorded {args.record / 'host.toml'} and {args.record / 'runs.json'}")


if __name__ == "__main__":
    main()
