"""Prediction arithmetic on recorded calibrations, a real bench predicting itself, memory, bad input.

No test here compares a prediction with a timing: how accurate predictions are on this host and
against published device figures is benchmarks/predict_accuracy.py's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import numpy as np

from edgekit.profiler.roofline import Calibration, calibrate, predict
from edgekit.profiler.shape import shape_from_params
from edgekit.targets import load_preset, preset_names
from tests.conftest import error_line
from tests.profiler.conftest import G_TOKENS, P_TOKENS


RECORDED = Path(__file__).parent / "data"


def _recorded():
    """Host profile and 2-thread measurements recorded on a machine of this kind (benchmarks/predict_accuracy.py)."""
    from edgekit.profiler.shape import ModelShape
    from edgekit.targets.profile import load_profile_file

    host = load_profile_file(RECORDED / "host.toml")
    runs = json.loads((RECORDED / "runs.json").read_text())
    out = {}
    for backend, rec in runs.items():
        two = rec["two_threads"]
        out[backend] = (ModelShape.model_validate(two["shape"]), two)
    return host, out


def _calibrate(shape, host, two):
    return calibrate(shape, host, threads=two["threads"], artifact=two["artifact"], measured_at="recorded",
                     forward_s=two["forward_s"], token_latency_s=two["token_latency_s"],
                     decode_position=two["decode_position"], prefill_s=two["prefill_s"],
                     prompt_tokens=two["prompt_tokens"])


def _roof_seconds(shape, profile, threads, position, cal):
    """The roofline by hand: the slower of streaming the bytes and doing the arithmetic."""
    t_mem = shape.decode_bytes(position) / (profile.bandwidth_gbs(threads) * 1e9)
    t_cmp = shape.decode_flops(position) / (profile.peak_gops(shape.compute, threads) * 1e9 * cal.compute_efficiency)
    return max(t_mem, t_cmp) / cal.roof_efficiency


@pytest.mark.parametrize("backend", ["llama.cpp", "onnx"])
def test_a_calibration_predicts_its_own_measurement_back(backend):
    """On the host and thread count it was measured with, a calibration reproduces the measured speeds exactly."""
    host, runs = _recorded()
    shape, two = runs[backend]
    cal = _calibrate(shape, host, two)
    assert cal.backend == backend and cal.threads == 2
    # predict() decodes at position prompt + gen // 2: choose the split that lands on the calibrated position
    gen = 40
    pred = predict(shape, host, cal, threads=2, prompt_tokens=two["decode_position"] - gen // 2, gen_tokens=gen)
    assert pred.threads == 2 and pred.decode_tps == pytest.approx(1 / two["token_latency_s"], rel=1e-9)
    pred = predict(shape, host, cal, threads=2, prompt_tokens=two["prompt_tokens"], gen_tokens=2 * (
        two["decode_position"] - two["prompt_tokens"]))
    assert pred.prefill_tps == pytest.approx(two["prompt_tokens"] / two["prefill_s"], rel=1e-9)


@pytest.mark.parametrize("backend", ["llama.cpp", "onnx"])
def test_one_thread_prediction_is_the_roofline_plus_the_calibrated_overheads(backend):
    """Fewer threads change the roofs (bandwidth and peak at 1 thread), never the per-layer and per-token overheads."""
    host, runs = _recorded()
    shape, two = runs[backend]
    cal = _calibrate(shape, host, two)
    pos = P_TOKENS + G_TOKENS // 2
    one = predict(shape, host, cal, threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    both = predict(shape, host, cal, threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    overhead = (shape.n_layers * cal.layer_overhead_s + cal.token_overhead_s)  # the host's own core: speed ratio 1
    assert 1 / one.decode_tps == pytest.approx(_roof_seconds(shape, host, 1, pos, cal) + overhead, rel=1e-9)
    assert 1 / both.decode_tps == pytest.approx(_roof_seconds(shape, host, 2, pos, cal) + overhead, rel=1e-9)
    assert one.decode_tps <= both.decode_tps  # one thread has no more bandwidth nor compute than two
    per_token = shape.prefill_flops(P_TOKENS) / P_TOKENS
    assert one.prefill_tps == pytest.approx(cal.prefill_efficiency * host.peak_gops(shape.compute, 1) * 1e9 / per_token,
                                            rel=1e-9)


def test_a_target_scales_the_roofs_and_the_overheads(profile_toml):
    """Twice the bandwidth halves a memory-bound roof; half the single-core speed doubles the fixed overheads."""
    from edgekit.targets.profile import load_profile_file

    host, runs = _recorded()
    shape, two = runs["llama.cpp"]
    cal = _calibrate(shape, host, two)
    base = load_profile_file(profile_toml(name="dev-a"))
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
    if p.bound == "memory" and q.bound == "memory":
        assert 1 / p.decode_tps - 1 / q.decode_tps == pytest.approx(t_mem / 2 / cal.roof_efficiency, rel=1e-6)
    else:
        assert q.decode_tps >= p.decode_tps
    fp32 = base.peak_gflops_fp32.value
    single_fp32 = base.single_thread_gflops_fp32
    slower = load_profile_file(profile_toml(
        name="dev-c", **({"single_thread_gflops_fp32": {"value": single_fp32.value / 2, "source": "test: halved"}}
                         if single_fp32 else {"peak_gflops_fp32": {"value": fp32 / 2, "source": "test: halved"}})))
    assert slower.core_gflops() == pytest.approx(base.core_gflops() / 2)
    r = predict(shape, slower, cal, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    roof_r = _roof_seconds(shape, slower, slower.threads, pos, cal)
    assert 1 / r.decode_tps == pytest.approx(roof_r + 2 * fixed, rel=1e-9)


def test_published_measurements_are_predicted_from_their_own_shape():
    """Each preset's published run becomes a shape and a finite prediction (accuracy: benchmarks/predict_accuracy.py)."""
    host, runs = _recorded()
    shape, two = runs["llama.cpp"]
    cal = _calibrate(shape, host, two)
    checked = 0
    for target, run in _published():
        s = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                              head_dim=run.head_dim, untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                              output_params=int(run.output_params_b * 1e9))
        p = predict(s, target, cal, threads=run.threads, prompt_tokens=run.prefill_tokens or 128, gen_tokens=128)
        assert p.threads == min(run.threads, target.threads) and p.decode_tps > 0 and p.prefill_tps > 0
        assert p.weights_bytes == s.weight_bytes and p.memory_bytes == p.weights_bytes + p.kv_bytes + p.runtime_bytes
        checked += 1
    assert checked >= 5  # runs (decode and prefill figures: 7)


@pytest.mark.slow
def test_a_real_bench_calibrates_so_that_it_predicts_itself(host_profile, smollm2_gguf):
    """End to end on a real run (no timing assertion): the bench's calibration predicts that run's own speed."""
    from edgekit.profiler import bench

    report = bench([smollm2_gguf], threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS, runs=1, warmup=0,
                   host=host_profile)
    result = report.results[0]
    assert result.status == "ok", result.error
    cal = result.calibration
    assert cal.threads == 2 and cal.backend == "llama.cpp" and cal.forward_s > 0
    assert cal.decode_position == P_TOKENS + G_TOKENS // 2
    run = [r for r in result.runs if r.ok][0].measurements
    assert cal.forward_s == pytest.approx(float(np.median(run["decode_forward_s"])), rel=1e-9)
    pred = predict(result.shape, host_profile, cal, threads=2, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    assert pred.decode_tps == pytest.approx(1 / float(np.median(run["token_latencies_s"])), rel=1e-6)
    assert pred.prefill_tps == pytest.approx(P_TOKENS / run["prefill_s"], rel=1e-6)


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
