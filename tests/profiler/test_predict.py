"""Prediction arithmetic on recorded calibrations, the calibration's timings, a real bench predicting itself, memory,
bad input.

No test here compares a prediction with a timing: how accurate predictions are on this host and
against published device figures is benchmarks/predict_accuracy.py's job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import numpy as np

from edgekit.profiler.roofline import Calibration, calibrate, predict
from edgekit.profiler.shape import shape_from_params
from edgekit.targets import load_preset, preset_names
from tests.conftest import error_line
from tests.profiler.conftest import G_TOKENS, P_TOKENS


RECORDED = Path(__file__).parent / "data"


def _recorded(case: str = "1t"):
    """Host profile and calibration inputs recorded on a machine of this kind (benchmarks/predict_accuracy.py):
    ``case`` 1t is a one-thread bench, 2t a two-thread one (both calibrate on one thread's CPU times)."""
    from edgekit.profiler.shape import ModelShape
    from edgekit.targets.profile import load_profile_file

    host = load_profile_file(RECORDED / "host.toml")
    runs = json.loads((RECORDED / "runs.json").read_text())
    out = {}
    for backend, rec in runs.items():
        out[backend] = (ModelShape.model_validate(rec["shape"]), rec["calibrations"][case])
    return host, out


def _calibrate(shape, host, inputs):
    return calibrate(shape, host, threads=inputs["threads"], artifact="recorded", measured_at="recorded",
                     timing=inputs["timing"], forward_s=inputs["forward_s"], token_latency_s=inputs["token_latency_s"],
                     decode_position=inputs["decode_position"], prefill_s=inputs["prefill_s"],
                     prompt_tokens=inputs["prompt_tokens"])


def _rate(profile, shape, threads):
    """The rate the model's kernels are measured against, by hand: llama.cpp's quantized kernels at the 256-bit
    fp32 rate (slowed by the int8 emulation on ARM cores without dotprod), everything else at its peak."""
    if shape.compute == "quant":
        rate = profile.simd256_gflops(threads)
        return rate / 2.5 if profile.arch == "arm64" and "dotprod" not in profile.isa else rate
    return profile.peak_gops(shape.compute, threads)


def _roof_seconds(shape, profile, threads, position, cal, host=False):
    """The roofline by hand: streaming the bytes and doing the arithmetic, the overlapped share of the shorter
    hidden under the longer (1: the slower of the two; 0: both add up)."""
    t_mem = shape.decode_bytes(position) / (profile.bandwidth_gbs(threads) * 1e9)
    t_cmp = shape.decode_flops(position) / (_rate(profile, shape, threads) * 1e9 * cal.compute_efficiency)
    t = max(t_mem, t_cmp) + (1 - profile.overlap) * min(t_mem, t_cmp)
    return t / cal.roof_efficiency if host else t


@pytest.mark.parametrize("backend", ["llama.cpp", "onnx"])
@pytest.mark.parametrize("case", ["1t", "2t"])
def test_a_calibration_predicts_its_own_measurement_back(backend, case):
    """On the host and thread count it was measured with, a calibration reproduces the measured speeds exactly."""
    host, runs = _recorded(case)
    shape, inputs = runs[backend]
    cal = _calibrate(shape, host, inputs)
    assert cal.backend == backend and cal.threads == inputs["threads"] == 1 and cal.timing == "cpu"
    # predict() decodes at position prompt + gen // 2: choose the split that lands on the calibrated position
    gen = 40
    pred = predict(shape, host, cal, threads=1, prompt_tokens=inputs["decode_position"] - gen // 2, gen_tokens=gen)
    assert pred.threads == 1 and pred.decode_tps == pytest.approx(1 / inputs["token_latency_s"], rel=1e-9)
    pred = predict(shape, host, cal, threads=1, prompt_tokens=inputs["prompt_tokens"], gen_tokens=2 * (
        inputs["decode_position"] - inputs["prompt_tokens"]))
    assert pred.prefill_tps == pytest.approx(inputs["prompt_tokens"] / inputs["prefill_s"], rel=1e-9)


@pytest.mark.parametrize("backend", ["llama.cpp", "onnx"])
def test_one_thread_prediction_is_the_roofline_plus_the_calibrated_overheads(backend):
    """More threads change the roofs (bandwidth and kernel rate at 2 threads), never the per-layer and per-token
    overheads; the host's own cache advantage (roof_efficiency) applies to the host only."""
    host, runs = _recorded()
    shape, inputs = runs[backend]
    cal = _calibrate(shape, host, inputs)
    assert cal.host_peak_gops == pytest.approx(_rate(host, shape, 1))
    pos = P_TOKENS + G_TOKENS // 2
    one = predict(shape, host, cal, threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    both = predict(shape, host, cal, threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    overhead = (shape.n_layers * cal.layer_overhead_s + cal.token_overhead_s)  # the host's own core: speed ratio 1
    assert 1 / one.decode_tps == pytest.approx(_roof_seconds(shape, host, 1, pos, cal, host=True) + overhead, rel=1e-9)
    assert 1 / both.decode_tps == pytest.approx(_roof_seconds(shape, host, 2, pos, cal, host=True) + overhead, rel=1e-9)
    assert one.decode_tps <= both.decode_tps  # two threads have no less bandwidth nor compute than one
    per_token = shape.prefill_flops(P_TOKENS) / P_TOKENS
    for pred, n in ((one, 1), (both, 2)):
        assert pred.prefill_tps == pytest.approx(cal.prefill_efficiency * _rate(host, shape, n) * 1e9 / per_token,
                                                 rel=1e-9)


def test_a_target_scales_the_roofs_and_the_overheads(profile_toml):
    """Twice the bandwidth saves half the streaming time; half the single-core speed doubles the fixed overheads."""
    from edgekit.targets.profile import load_profile_file

    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    cal = _calibrate(shape, host, inputs)
    base = load_profile_file(profile_toml(name="dev-a"))
    assert base.overlap == 0.0  # the Raspberry Pi 5's: streaming and arithmetic add up
    pos = P_TOKENS + G_TOKENS // 2
    fixed = (shape.n_layers * cal.layer_overhead_s + cal.token_overhead_s) * cal.host_core_gflops / base.core_gflops()
    p = predict(shape, base, cal, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    assert 1 / p.decode_tps == pytest.approx(_roof_seconds(shape, base, base.threads, pos, cal) + fixed, rel=1e-9)
    bw = base.memory_bandwidth_gbs.value
    single = base.single_thread_bandwidth_gbs
    faster = load_profile_file(profile_toml(
        name="dev-b", memory_bandwidth_gbs={"value": bw * 2, "source": "test: doubled"},
        **({"single_thread_bandwidth_gbs": {"value": single.value * 2, "source": "test: doubled"}} if single else {})))
    q = predict(shape, faster, cal, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    t_mem = shape.decode_bytes(pos) / (base.bandwidth_gbs(base.threads) * 1e9)
    assert 1 / p.decode_tps - 1 / q.decode_tps == pytest.approx(t_mem / 2, rel=1e-6)  # additive: exactly half of it
    fp32 = base.peak_gflops_fp32.value
    single_fp32 = base.single_thread_gflops_fp32
    slower = load_profile_file(profile_toml(
        name="dev-c", **({"single_thread_gflops_fp32": {"value": single_fp32.value / 2, "source": "test: halved"}}
                         if single_fp32 else {"peak_gflops_fp32": {"value": fp32 / 2, "source": "test: halved"}})))
    assert slower.core_gflops() == pytest.approx(base.core_gflops() / 2)
    r = predict(shape, slower, cal, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    roof_r = _roof_seconds(shape, slower, slower.threads, pos, cal)
    assert 1 / r.decode_tps == pytest.approx(roof_r + 2 * fixed, rel=1e-9)


def test_overlap_hides_the_shorter_of_streaming_and_arithmetic(profile_toml):
    """A target whose cores overlap streaming and arithmetic saves exactly the shorter of the two per token."""
    from edgekit.targets.profile import load_profile_file

    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    cal = _calibrate(shape, host, inputs)
    serial = load_profile_file(profile_toml(name="serial"))
    hidden = load_profile_file(profile_toml(name="hidden", memory_compute_overlap={"value": 1.0, "source": "test"}))
    half = load_profile_file(profile_toml(name="half", memory_compute_overlap={"value": 0.5, "source": "test"}))
    pos = P_TOKENS + G_TOKENS // 2
    t_mem = shape.decode_bytes(pos) / (serial.bandwidth_gbs(serial.threads) * 1e9)
    t_cmp = shape.decode_flops(pos) / (_rate(serial, shape, serial.threads) * 1e9 * cal.compute_efficiency)
    p, q, h = (predict(shape, t, cal, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS) for t in (serial, hidden, half))
    assert 1 / p.decode_tps - 1 / q.decode_tps == pytest.approx(min(t_mem, t_cmp), rel=1e-6)
    assert 1 / p.decode_tps - 1 / h.decode_tps == pytest.approx(min(t_mem, t_cmp) / 2, rel=1e-6)
    assert p.prefill_tps == q.prefill_tps  # the prompt's rate does not depend on it


def test_cores_without_int8_dot_products_run_quantized_kernels_slower(profile_toml):
    """Without dotprod an ARM core emulates llama.cpp's int8 dot products: its quantized kernels' rate is its fp32
    rate / 2.5 (roofline.INT8_EMULATION); fp16 weights (fp32 arithmetic) do not care."""
    from edgekit.profiler.roofline import INT8_EMULATION
    from edgekit.targets.profile import load_profile_file

    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    cal = _calibrate(shape, host, inputs)
    with_dot = load_profile_file(profile_toml(name="with-dot"))
    without = load_profile_file(profile_toml(name="without-dot", isa=["neon", "fp16"]))
    assert INT8_EMULATION == 2.5
    q8, f16 = shape_from_params(10**9, "q8_0"), shape_from_params(10**9, "f16")
    assert (q8.compute, f16.compute) == ("quant", "fp32")
    a, b = predict(q8, with_dot, cal), predict(q8, without, cal)
    assert a.prefill_tps == pytest.approx(2.5 * b.prefill_tps, rel=1e-12) and a.decode_tps > b.decode_tps
    assert predict(f16, with_dot, cal).prefill_tps == pytest.approx(predict(f16, without, cal).prefill_tps, rel=1e-12)


def test_wider_host_vectors_do_not_change_a_targets_prediction():
    """Host-independence by construction: a host that differs only in its AVX-512 (full-width) fp32 rate, which
    llama.cpp's quantized kernels cannot use, calibrates to the same efficiency and predicts every published
    figure the same; a host twice as fast at 256 bits that runs the prompt in half the time does too."""
    from edgekit.targets.profile import parse_profile

    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    assert shape.compute == "quant" and host.single_thread_gflops_fp32_256 is not None
    data = host.model_dump(mode="json")

    def scaled(fields, k):
        d = json.loads(json.dumps(data))
        for f in fields:
            d[f]["value"] *= k
        return parse_profile(d, "test host")

    wide = scaled(("peak_gflops_fp32", "single_thread_gflops_fp32"), 2.0)
    fast = scaled(("peak_gflops_fp32_256", "single_thread_gflops_fp32_256"), 2.0)
    base, cal_wide = _calibrate(shape, host, inputs), _calibrate(shape, wide, inputs)
    cal_fast = _calibrate(shape, fast, {**inputs, "prefill_s": inputs["prefill_s"] / 2})
    assert cal_wide.prefill_efficiency == base.prefill_efficiency
    assert cal_fast.prefill_efficiency == pytest.approx(base.prefill_efficiency, rel=1e-12)
    checked = 0
    for target, run in _published():
        s = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                              head_dim=run.head_dim, untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                              output_params=int(run.output_params_b * 1e9))
        p0, p1, p2 = (predict(s, target, c, threads=run.threads) for c in (base, cal_wide, cal_fast))
        assert p1.decode_tps == pytest.approx(p0.decode_tps, rel=1e-12) and p1.prefill_tps == p0.prefill_tps
        assert p2.prefill_tps == pytest.approx(p0.prefill_tps, rel=1e-12)
        checked += 1
    assert checked >= 8


def test_published_measurements_are_predicted_from_their_own_shape():
    """Each preset's published run becomes a shape and a finite prediction (accuracy: benchmarks/predict_accuracy.py)."""
    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    cal = _calibrate(shape, host, inputs)
    checked = 0
    for target, run in _published():
        s = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                              head_dim=run.head_dim, untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                              output_params=int(run.output_params_b * 1e9))
        p = predict(s, target, cal, threads=run.threads, prompt_tokens=run.prefill_tokens or 128, gen_tokens=128)
        assert p.threads == min(run.threads, target.threads) and p.decode_tps > 0 and p.prefill_tps > 0
        assert p.weights_bytes == s.weight_bytes and p.memory_bytes == p.weights_bytes + p.kv_bytes + p.runtime_bytes
        checked += 1
    assert checked >= 8  # runs (decode and prefill figures: 12)


def _measurements(inputs, *, threads, wait, cpu=True, scale=1.0):
    """One run's worker measurements shaped from recorded calibration inputs (``scale``: its wall clock / CPU time)."""
    P, fwd, lat = inputs["prompt_tokens"], inputs["forward_s"], inputs["token_latency_s"]
    n = 2 * (inputs["decode_position"] - P)
    m = {"kind": "decoder", "prompt_tokens": P, "generated_tokens": n, "decode_tokens": n - 1, "load_s": 0.1,
         "prefill_s": inputs["prefill_s"] * scale, "ttft_s": inputs["prefill_s"] * scale + lat * scale,
         "prefill_tps": P / (inputs["prefill_s"] * scale), "decode_tps": 1 / (lat * scale),
         "token_latencies_s": [lat * scale] * (n - 1), "decode_forward_s": [fwd * scale] * (n - 1),
         "context_length": 4096, "cpu_wait_fraction": wait, "base_rss_bytes": 50_000_000, "threads": threads}
    if cpu:
        m.update(prefill_cpu_s=inputs["prefill_s"], decode_forward_cpu_s=[fwd] * (n - 1),
                 token_loop_cpu_s=[lat - fwd] * (n - 2))
    return m


def test_the_calibration_times_one_thread_by_its_cpu_time():
    """bench's choice of timings: one-thread runs by their CPU time, however long they waited; a two-thread bench
    by one more run with one thread (its CPU time); the quietest run's wall clock only without CPU times."""
    from edgekit.profiler.bench import _calibrate as bench_calibrate, summarize_decoder
    from edgekit.profiler.schema import ArtifactResult, BenchSettings

    host, runs = _recorded()
    shape, inputs = runs["llama.cpp"]
    settings = lambda threads: BenchSettings(prompt_tokens=inputs["prompt_tokens"], gen_tokens=40, runs=2, warmup=0,
                                             threads=threads, context=None, timeout_s=60, batch_reps=1, targets=[])

    def calibrated(data, threads, extra=None):
        result = ArtifactResult(label="smol", path="x", format="gguf", backend="llama.cpp", kind="decoder",
                                precision="q4_1", size_bytes=shape.weight_bytes, shape=shape, threads=threads,
                                status="ok", runs=[], decoder=summarize_decoder(data))
        calls = []

        def one_thread_run():
            calls.append(1)
            return extra

        return bench_calibrate(result, shape, host, data, settings(threads), one_thread_run), calls

    expected = _calibrate(shape, host, inputs)
    # one thread on a busy host: the wall clock is 5x the CPU time, the calibration is the quiet one
    busy_1t = [_measurements(inputs, threads=1, wait=0.8, scale=5.0) for _ in range(2)]
    cal, calls = calibrated(busy_1t, 1)
    assert calls == [] and cal.timing == "cpu" and cal.threads == 1 and cal.cpu_wait_fraction is None
    assert cal.forward_s == pytest.approx(expected.forward_s) and cal.prefill_efficiency == pytest.approx(
        expected.prefill_efficiency) and cal.token_overhead_s == pytest.approx(expected.token_overhead_s)
    # two threads, quiet or busy: one more run with one thread, calibrated on its CPU times
    for wait in (0.0, 0.8):
        runs_2t = [_measurements(inputs, threads=2, wait=wait, scale=0.6 if wait == 0 else 20.0) for _ in range(2)]
        cal, calls = calibrated(runs_2t, 2, extra=_measurements(inputs, threads=1, wait=wait, scale=3.0))
        assert calls == [1] and cal.timing == "cpu" and cal.threads == 1
        assert cal.prefill_efficiency == pytest.approx(expected.prefill_efficiency)
    # the extra run failed: the quietest two-thread run's wall clock, calibrated at two threads
    quiet = [_measurements(inputs, threads=2, wait=0.3, scale=2.0), _measurements(inputs, threads=2, wait=0.01)]
    cal, calls = calibrated(quiet, 2, extra=None)
    assert calls == [1] and cal.timing == "wall" and cal.threads == 2 and cal.cpu_wait_fraction == 0.01
    assert cal.forward_s == pytest.approx(inputs["forward_s"])
    # runs that recorded no CPU times (an older worker on a device): the wall clock as well
    cal, _ = calibrated([_measurements(inputs, threads=1, wait=0.0, cpu=False)], 1)
    assert cal.timing == "wall" and cal.forward_s == pytest.approx(inputs["forward_s"])


@pytest.mark.slow
def test_the_host_profile_measures_what_the_calibration_needs(host_profile):
    """detect: all threads never measure below one thread (a busy host's doing), and an AVX-512 host also gets
    its 256-bit fp32 rate, measured the way its source says."""
    from edgekit.targets.detect import has_wide_vectors

    for kind in ("fp32", "int8"):
        assert host_profile.peak_gops(kind, host_profile.threads) >= host_profile.peak_gops(kind, 1)
    assert host_profile.bandwidth_gbs(host_profile.threads) >= host_profile.bandwidth_gbs(1)
    if has_wide_vectors(host_profile.isa):
        f256 = host_profile.single_thread_gflops_fp32_256
        assert f256 is not None and "OPENBLAS_CORETYPE=Haswell" in f256.source
        assert host_profile.simd256_gflops(host_profile.threads) >= host_profile.simd256_gflops(1)
    else:
        assert host_profile.peak_gflops_fp32_256 is None
        assert host_profile.simd256_gflops(1) == host_profile.peak_gops("fp32", 1)


@pytest.mark.slow
def test_a_real_bench_calibrates_so_that_it_predicts_itself(host_profile, smollm2_gguf):
    """End to end on a real run (no timing assertion): a one-thread bench calibrates on its runs' CPU times and
    predicts that timing back; a two-thread bench calibrates on one more run with one thread."""
    from edgekit.profiler import bench

    report = bench([smollm2_gguf], threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=2, warmup=0,
                   host=host_profile)
    result = report.results[0]
    assert result.status == "ok", result.error
    cal = result.calibration
    assert cal.threads == 1 and cal.timing == "cpu" and cal.backend == "llama.cpp" and cal.forward_s > 0
    assert cal.decode_position == P_TOKENS + G_TOKENS // 2
    runs = [r.measurements for r in result.runs if r.ok]
    for m in runs:
        assert len(m["decode_forward_cpu_s"]) == len(m["decode_forward_s"]) == G_TOKENS - 1
        assert len(m["token_loop_cpu_s"]) == G_TOKENS - 2 and m["prefill_cpu_s"] > 0
    fwd = float(np.percentile([x for m in runs for x in m["decode_forward_cpu_s"]], 25))
    loop = float(np.median([x for m in runs for x in m["token_loop_cpu_s"]]))
    prefill = min(m["prefill_cpu_s"] for m in runs)
    assert cal.forward_s == pytest.approx(fwd, rel=1e-9)
    pred = predict(result.shape, host_profile, cal, threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    assert pred.decode_tps == pytest.approx(1 / (fwd + loop), rel=1e-6)
    assert pred.prefill_tps == pytest.approx(P_TOKENS / prefill, rel=1e-6)

    two = bench([smollm2_gguf], threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=1, warmup=0,
                host=host_profile).results[0]
    assert two.status == "ok" and len(two.runs) == 1 and two.threads == 2  # the calibration run is not one of them
    assert two.calibration.threads == 1 and two.calibration.timing == "cpu"


def _published():
    for name in preset_names():
        target = load_preset(name)
        for run in target.published:
            yield target, run


@pytest.fixture(scope="module")
def gguf_report_file(host_profile, smollm2_gguf, tmp_path_factory):
    from edgekit.profiler import bench

    path = tmp_path_factory.mktemp("cal") / "bench.json"
    report = bench([smollm2_gguf], threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=1, warmup=0,
                   host=host_profile)
    path.write_text(json.dumps(report.to_json()))
    return path


@pytest.mark.slow
def test_predict_from_params_memory_need(cli, gguf_report_file):
    proc = cli("predict", "--target", "raspberry-pi-5", "--target", "raspberry-pi-4", "--params", "3.21B", "--quant",
               "q4_k_m", "--layers", "28", "--kv-heads", "8", "--head-dim", "128", "--context", "16384",
               "--calibration", gguf_report_file, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    cal = Calibration.model_validate(data["calibration"])
    pi5, pi4 = data["predictions"]
    assert pi5["kv_bytes"] == 2 * 28 * 8 * 128 * 2 * 16384  # f16 K and V of 28 layers at 16384 positions
    assert pi5["weights_bytes"] == int(3.21e9 * 4.90 / 8)
    assert pi5["runtime_bytes"] == cal.base_rss_bytes + cal.runtime_extra_bytes
    assert pi5["memory_bytes"] == pi5["weights_bytes"] + pi5["kv_bytes"] + pi5["runtime_bytes"]
    assert pi5["fits"] is True and pi4["fits"] is False  # 3.9 GB: fits the Pi 5's 6.5 GB, not the Pi 4's 3 GB
    assert pi5["decode_tps"] > pi5["decode_tps_at_context"] > 0 and pi5["prefill_tps"] > 0
    proc = cli("predict", "--target", "raspberry-pi-5", "--params", "3.21B", "--quant", "q4_k_m",
               "--calibration", gguf_report_file)
    assert proc.returncode == 0 and "KV cache not counted" in proc.stdout


@pytest.mark.slow
def test_predict_an_artifact_with_a_quick_host_calibration(cli, smollm2_gguf):
    proc = cli("predict", smollm2_gguf, "--target", "iphone-15-pro", "--target", "raspberry-pi-5")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "iphone-15-pro (prediction only)" in proc.stdout and "raspberry-pi-5" in proc.stdout
    assert "calibrated on SmolLM2-135M-Instruct.Q4_1 (llama.cpp" in proc.stdout
    # --threads is the target's: more than this host's CPUs still predicts (the host calibrates with what it has)
    many = 4 * os.cpu_count() + 4
    proc = cli("predict", smollm2_gguf, "--target", "galaxy-s24", "--threads", str(many), "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    data = json.loads(proc.stdout)
    assert data["calibration"]["threads"] <= os.cpu_count()
    assert data["predictions"][0]["threads"] == load_preset("galaxy-s24").threads  # capped by the target, not the host


def test_predict_bad_input(cli, tmp_path, smollm2_gguf):
    proc = cli("predict", "--target", "raspberry-pi-5")
    assert proc.returncode == 2 and "either an ARTIFACT or --params" in error_line(proc)
    proc = cli("predict", smollm2_gguf, "--target", "raspberry-pi-5", "--params", "1B", "--quant", "q4_0")
    assert proc.returncode == 2 and "either an ARTIFACT or --params" in error_line(proc)
    proc = cli("predict", "--target", "raspberry-pi-5", "--params", "3B")
    assert proc.returncode == 2 and "--params needs --quant" in error_line(proc)
    proc = cli("predict", "--target", "raspberry-pi-5", "--params", "3B", "--quant", "q7_x")
    assert proc.returncode == 2 and "unknown quantization 'q7_x'" in error_line(proc)
    proc = cli("predict", "--target", "raspberry-pi-5", "--params", "lots", "--quant", "q4_0")
    assert proc.returncode == 2 and "--params 'lots'" in error_line(proc)
    proc = cli("predict", "--target", "mars-rover", "--params", "3B", "--quant", "q4_0")
    assert proc.returncode == 2 and "unknown target 'mars-rover'" in error_line(proc)
    notreport = tmp_path / "x.json"
    notreport.write_text('{"hello": 1}')
    proc = cli("predict", "--target", "pixel-8", "--params", "3B", "--quant", "q4_0", "--calibration", notreport)
    assert proc.returncode == 2 and "not an edgekit bench report" in error_line(proc)
    onnx_only = tmp_path / "onnx.json"
    onnx_only.write_text(json.dumps({"schema": "edgekit.bench", "results": []}))
    proc = cli("predict", "--target", "pixel-8", "--params", "3B", "--quant", "int4", "--calibration", onnx_only)
    assert proc.returncode == 2 and "holds no onnx decoder calibration" in error_line(proc)


def test_a_calibration_predicts_only_its_own_runtime():
    from edgekit.errors import ConfigError

    cal = Calibration(backend="onnx", artifact="a", host="h", measured_at="now", threads=1, compute="fp32",
                      host_bandwidth_gbs=10, host_peak_gops=10, host_core_gflops=10)
    with pytest.raises(ConfigError, match="a onnx calibration cannot predict a llama.cpp model"):
        predict(shape_from_params(10**9, "q4_0"), load_preset("pixel-8"), cal)


def test_only_quiet_calibrations_are_kept_for_later(tmp_path, monkeypatch):
    from edgekit.profiler.roofline import load_calibration, save_calibration

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    common = dict(backend="llama.cpp", artifact="a", host="h", measured_at="now", threads=2, compute="fp32",
                  host_bandwidth_gbs=10, host_peak_gops=10, host_core_gflops=10, forward_s=0.01)
    assert load_calibration("llama.cpp") is None
    assert not save_calibration(Calibration(cpu_wait_fraction=0.6, **common))
    assert load_calibration("llama.cpp") is None
    quiet = Calibration(cpu_wait_fraction=0.02, **common)
    assert save_calibration(quiet) and load_calibration("llama.cpp") == quiet
    cpu_timed = Calibration(timing="cpu", cpu_wait_fraction=0.6, **common)  # waiting does not change CPU time
    assert save_calibration(cpu_timed) and load_calibration("llama.cpp") == cpu_timed
