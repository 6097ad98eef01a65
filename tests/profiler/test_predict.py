"""Prediction: the host's own 1-thread speed from a 2-thread calibration, published device measurements, memory."""

from __future__ import annotations

import json

import pytest

from edgekit.profiler.roofline import Calibration, predict
from edgekit.profiler.shape import shape_from_params
from edgekit.targets import load_preset, preset_names
from tests.conftest import error_line
from tests.profiler.conftest import G_TOKENS, P_TOKENS


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gguf", "onnx"])
def test_one_thread_decode_predicted_within_25_percent(which, quiet_bench, quiet_host, smollm2_gguf, onnx_decoder):
    path = smollm2_gguf if which == "gguf" else onnx_decoder
    two, one = quiet_bench(path, 2), quiet_bench(path, 1)
    result = two.report.results[0]
    cal = result.calibration
    assert cal.threads == 2 and cal.backend == ("llama.cpp" if which == "gguf" else "onnx")
    pred = predict(result.shape, quiet_host, cal, threads=1, prompt_tokens=P_TOKENS, gen_tokens=G_TOKENS)
    measured = one.data["decode_tps"]
    assert pred.threads == 1
    assert pred.decode_tps == pytest.approx(measured, rel=0.25), (
        f"{which}: predicted {pred.decode_tps:.1f} tok/s at 1 thread, measured {measured:.1f} "
        f"(2-thread forward {cal.forward_s * 1e3:.2f} ms; CPU wait {two.wait:.0%} / {one.wait:.0%}; "
        f"host microbenchmarks CPU wait {quiet_host.measurement_cpu_wait:.0%})"
    )


def _published():
    for name in preset_names():
        target = load_preset(name)
        for run in target.published:
            yield target, run


@pytest.mark.slow
def test_presets_agree_with_published_measurements(quiet_bench, smollm2_gguf):
    """Each published llama.cpp measurement in the presets against the prediction from this host's calibration.

    Tolerances are stated per measurement in the preset (default: decode 35%, prefill 60%); the Raspberry
    Pi 4's are wider and its note says why.
    """
    cal = quiet_bench(smollm2_gguf, 2).report.results[0].calibration
    checked, misses = 0, []
    for target, run in _published():
        shape = shape_from_params(int(run.params_b * 1e9), run.quant, layers=run.layers, kv_heads=run.kv_heads,
                                  head_dim=run.head_dim, untied_embedding_params=int(run.untied_embedding_params_b * 1e9),
                                  output_params=int(run.output_params_b * 1e9))
        p = predict(shape, target, cal, threads=run.threads, prompt_tokens=run.prefill_tokens or 128, gen_tokens=128)
        for what, published, predicted, tol in (("decode", run.decode_tps, p.decode_tps, run.decode_tolerance),
                                                ("prefill", run.prefill_tps, p.prefill_tps, run.prefill_tolerance)):
            if published is None:
                continue
            checked += 1
            if abs(predicted / published - 1) > tol:
                misses.append(f"{target.name} {run.model} {what}: predicted {predicted:.2f}, published {published} "
                              f"(tolerance {tol:.0%})")
    assert checked >= 7
    assert not misses, "; ".join(misses) + f" (calibration CPU wait {cal.cpu_wait_fraction})"


@pytest.fixture(scope="module")
def gguf_report_file(quiet_bench, smollm2_gguf, tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "bench.json"
    path.write_text(json.dumps(quiet_bench(smollm2_gguf, 2).report.to_json()))
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
