"""bench: exact token counts, ordered timings, peak RSS from wait4, failed runs kept apart, reports, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgekit.errors import ArtifactError, ConfigError
from edgekit.profiler import BenchReport, bench
from edgekit.profiler.bench import run_once, worker_command
from tests.conftest import error_line

SMALL = dict(prompt_tokens=24, gen_tokens=12, runs=2, warmup=1)


@pytest.fixture(scope="module")
def gguf_report(smollm2_gguf, host_profile):
    return bench([smollm2_gguf], targets=["raspberry-pi-5"], host=host_profile, **SMALL)


@pytest.fixture(scope="module")
def onnx_report(onnx_decoder, host_profile):
    return bench([onnx_decoder], host=host_profile, **SMALL)


def _check_decoder(report: BenchReport):
    r = report.results[0]
    assert r.status == "ok", r.error
    d = r.decoder
    # the counts are the requested ones: prompt cut to 24 ids, 12 generated (the first by prefill, 11 decode steps)
    assert (d.prompt_tokens, d.generated_tokens, d.decode_tokens) == (24, 12, 11)
    measured = [run for run in r.runs if not run.warmup]
    assert len(r.runs) == 3 and r.runs[0].warmup and len(measured) == 2
    assert d.decode_tps.n == d.load_s.n == r.peak_rss_bytes.n == 2  # the warm-up run is not counted
    for run in measured:
        m = run.measurements
        assert m["prompt_tokens"] == 24 and m["generated_tokens"] == 12 and len(m["token_latencies_s"]) == 11
        assert len(m["decode_forward_s"]) == 11
        assert all(x > 0 for x in m["token_latencies_s"])
        assert 0 < m["prefill_s"] <= m["ttft_s"]
        assert run.peak_rss_bytes > r.size_bytes  # the weights are resident
        assert m["heavy_modules"] == []  # the runtime side never imports torch, transformers or optimum
    for spread in (d.load_s, d.ttft_s, d.prefill_tps, d.decode_tps):
        assert 0 < spread.min <= spread.median <= spread.max
    for p in (d.token_latency_s, d.forward_s):
        assert 0 < p.p50 <= p.p90 <= p.p99
    assert d.forward_s.p50 <= d.token_latency_s.p50
    # one JSON schema for both formats, and it reads back
    data = report.to_json()
    assert data["schema"] == "edgekit.bench" and data["schema_version"] == 1
    assert BenchReport.model_validate(json.loads(json.dumps(data))) == report
    return r


@pytest.mark.slow
def test_gguf_counts_timings_prediction_and_ram_check(gguf_report):
    r = _check_decoder(gguf_report)
    assert r.format == "gguf" and r.backend == "llama.cpp" and r.threads == 2  # the Pi's 4 threads, capped at 2 CPUs
    assert [p.target for p in r.predictions] == ["raspberry-pi-5"]
    p = r.predictions[0]
    assert p.decode_tps > 0 and p.prefill_tps > 0 and p.threads == 4
    assert p.memory_bytes == p.weights_bytes + p.kv_bytes + p.runtime_bytes
    check = r.ram_checks[0]
    assert check.peak_rss_bytes == int(r.peak_rss_bytes.median) and not check.exceeds_budget


@pytest.mark.slow
def test_onnx_counts_and_timings(onnx_report):
    r = _check_decoder(onnx_report)
    assert r.format == "onnx" and r.precision == "int8" and r.gate.metric == "top1" and r.gate.value > 0.8


@pytest.mark.slow
def test_encoder_batches(onnx_artifact, host_profile):
    art = onnx_artifact("minilm-fp32").path
    r = bench([art], prompt_tokens=32, runs=1, warmup=0, batch_reps=3, targets=["pixel-8"], host=host_profile).results[0]
    assert r.status == "ok" and r.kind == "encoder" and r.decoder is None
    assert set(r.encoder.batches) == {"1", "8", "32"} and 0 < r.encoder.prompt_tokens <= 32
    for size, b in r.encoder.batches.items():
        assert 0 < b.latency_s.p50 <= b.latency_s.p90 <= b.latency_s.p99
        assert b.items_per_s == pytest.approx(int(size) / b.latency_s.p50)
    assert len(r.runs[0].measurements["batch_latencies_s"]["32"]) == 3
    assert r.predictions[0].encoder_items_per_s > 0


@pytest.mark.slow
@pytest.mark.parametrize("which", ["gguf", "onnx"])
def test_peak_rss_agrees_with_usr_bin_time(which, smollm2_gguf, onnx_decoder, tmp_path):
    """The peak RSS bench reports is the one /usr/bin/time reports for the same run.

    One run measured both ways: two separate runs of an ONNX model differ by more than 10 % in peak RSS
    (onnxruntime's arena grows differently from run to run), so comparing two runs tested the model, not us.
    """
    cmd = worker_command(smollm2_gguf if which == "gguf" else onnx_decoder, threads=2, context=None,
                         prompt_tokens=16, gen_tokens=8, batch_reps=1)
    out = tmp_path / "time.txt"
    data, code, timed_out, rss, _wall, err = run_once(["/usr/bin/time", "-f", "%M", "-o", str(out), *cmd], 300)
    assert code == 0 and not timed_out, err
    assert data and "error" not in data, data
    kb = int(out.read_text().split()[-1])
    assert kb > 50_000  # the model is loaded: tens of MB at least
    assert rss == pytest.approx(kb * 1024, rel=0.02)


def test_profiler_and_target_modules_stay_torch_free():
    code = ("import sys, edgekit.profiler, edgekit.profiler.report, edgekit.profiler.worker, edgekit.targets.detect, "
            "edgekit.cli.bench, edgekit.cli.targets, edgekit.cli.predict; "
            "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_crashed_and_silent_runs_are_reported_not_raised():
    from edgekit.profiler.bench import _record

    crash = run_once([sys.executable, "-c", "import os; os.abort()"], 60)
    rec = _record(0, False, *crash, timeout=60)
    assert not rec.ok and rec.exit_code < 0 and "crashed (signal" in rec.error
    failing = run_once([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 60)
    rec = _record(1, False, *failing, timeout=60)
    assert not rec.ok and rec.exit_code == 3 and "exit status 3: boom" in rec.error and not rec.user_error
    slow = run_once([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    rec = _record(2, False, *slow, timeout=0.5)
    assert not rec.ok and rec.timed_out and "timeout of 0.5 s" in rec.error


@pytest.mark.slow
def test_readme_command_on_a_mix_of_onnx_and_gguf(cli, tmp_path, tiny_onnx_artifact, tiny_gguf_artifact, smollm2_gguf):
    out = tmp_path / "report"
    proc = cli("bench", tiny_onnx_artifact, tiny_gguf_artifact, smollm2_gguf, "--runs", "1", "--warmup", "0",
               "--prompt-tokens", "16", "--gen-tokens", "8", "--target", "raspberry-pi-5", "--report", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for label in ("tiny-fp32", "tiny-q8_0", "SmolLM2-135M-Instruct.Q4_1"):
        assert label in proc.stdout
    assert "raspberry-pi-5" in proc.stdout
    report = BenchReport.model_validate(json.loads((out / "bench.json").read_text()))
    assert [r.format for r in report.results] == ["onnx", "gguf", "gguf"]
    assert all(r.status == "ok" and r.decoder.generated_tokens == 8 for r in report.results)
    assert report.results[1].gate is not None and report.results[2].gate is None  # bare .gguf: no manifest
    md = (out / "bench.md").read_text()
    assert "| tiny-q8_0 | gguf |" in md and "## Predicted per target" in md
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(out / "bench.png").shape[:2]
    assert width > 800 and height > 300
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_artifact_that_fails_to_load_is_reported_and_the_others_kept(cli, tmp_path, smollm2_gguf):
    # a header llama.cpp refuses but the bench's own checks do not read: a key it requires is misspelt
    data = smollm2_gguf.read_bytes()
    key = b"llama.attention.layer_norm_rms_epsilon"
    assert data.count(key) == 1
    broken = tmp_path / "no-eps.gguf"
    broken.write_bytes(data.replace(key, key[:-1] + b"m"))
    out = tmp_path / "b.json"
    proc = cli("bench", smollm2_gguf, broken, "--runs", "2", "--warmup", "0", "--prompt-tokens", "8",
               "--gen-tokens", "4", "-o", out)
    assert proc.returncode == 2
    assert "no-eps.gguf" in error_line(proc) and "could not be loaded" in error_line(proc)
    report = BenchReport.model_validate(json.loads(out.read_text()))
    good, bad = report.results
    assert good.status == "ok" and good.decoder.decode_tokens == 3
    assert bad.status == "failed" and len(bad.runs) == 1 and bad.runs[0].user_error  # not retried


def test_a_truncated_artifact_is_refused_before_any_run(cli, tmp_path, smollm2_gguf):
    broken = tmp_path / "truncated.gguf"
    with open(smollm2_gguf, "rb") as src:
        broken.write_bytes(src.read(8 * 1024 * 1024))  # header intact, tensor data cut short
    out = tmp_path / "b.json"
    proc = cli("bench", smollm2_gguf, broken, "--runs", "2", "--warmup", "0", "-o", out)
    assert proc.returncode == 2
    assert "truncated.gguf" in error_line(proc) and "truncated or corrupt" in error_line(proc)
    assert not out.exists()  # refused before the good artifact's runs: nothing measured, nothing written


@pytest.mark.slow
def test_timeout_runs_fail_with_exit_1(cli, tmp_path, smollm2_gguf):
    out = tmp_path / "t.json"
    proc = cli("bench", smollm2_gguf, "--runs", "2", "--warmup", "0", "--timeout", "0.2", "-o", out)
    assert proc.returncode == 1
    assert "2 of 2 runs failed" in error_line(proc) and "timeout" in error_line(proc)
    result = BenchReport.model_validate(json.loads(out.read_text())).results[0]
    assert result.status == "failed" and all(r.timed_out for r in result.runs)


@pytest.mark.slow
def test_peak_rss_over_a_target_budget_is_flagged(profile_toml, smollm2_gguf, host_profile):
    tiny_budget = profile_toml(name="tiny-box", threads=1, app_ram_budget_gb={"value": 0.05, "source": "test device"})
    r = bench([smollm2_gguf], targets=[str(tiny_budget)], prompt_tokens=8, gen_tokens=4, runs=1, warmup=0,
              host=host_profile).results[0]
    assert r.threads == 1  # the target's thread count
    assert r.ram_checks[0].exceeds_budget and r.ram_checks[0].ram_budget_bytes == 50_000_000
    assert not r.predictions[0].fits


def test_bad_input(cli, tmp_path, smollm2_gguf, profile_toml):
    proc = cli("bench", tmp_path / "nope")
    assert proc.returncode == 2 and "does not exist" in error_line(proc)
    (tmp_path / "empty").mkdir()
    proc = cli("bench", tmp_path / "empty")
    assert proc.returncode == 2 and "not an edgekit artifact" in error_line(proc)
    proc = cli("bench", smollm2_gguf, "--target", "pi-99")
    assert proc.returncode == 2 and "unknown target 'pi-99'" in error_line(proc) and "raspberry-pi-5" in error_line(proc)
    proc = cli("bench", smollm2_gguf, "--target", profile_toml(drop=("threads",)))
    assert proc.returncode == 2 and "field 'threads' is missing" in error_line(proc)
    proc = cli("bench", smollm2_gguf, "--runs", "0")
    assert proc.returncode == 2 and "--runs" in error_line(proc)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    proc = cli("bench", smollm2_gguf, "--report", afile)
    assert proc.returncode == 2 and "is not a folder" in error_line(proc)
    with pytest.raises(ConfigError, match="gen_tokens must be an integer >= 2"):
        bench([smollm2_gguf], gen_tokens=1)
    with pytest.raises(ArtifactError):
        bench([tmp_path / "nope.onnx"])
    assert not list(tmp_path.glob(".*"))


def test_bench_report_markdown_without_runs_lists_failures():
    from edgekit.profiler.report import markdown
    from edgekit.profiler.schema import ArtifactResult, BenchSettings, RunRecord
    from edgekit.profiler.shape import shape_from_params

    failed = ArtifactResult(label="x", path="x.gguf", format="gguf", backend="llama.cpp", kind="decoder",
                            precision="q4_0", size_bytes=1, shape=shape_from_params(10**6, "q4_0"), threads=1,
                            status="failed", error="run crashed (signal 9)",
                            runs=[RunRecord(index=0, warmup=False, ok=False, wall_s=0.1, error="run crashed (signal 9)")])
    report = BenchReport(created_at="now", edgekit_version="0", settings=BenchSettings(
        prompt_tokens=1, gen_tokens=2, runs=1, warmup=0, threads=1, context=None, timeout_s=1, batch_reps=1, targets=[]),
        results=[failed])
    text = markdown(report)
    assert "## Failed runs" in text and "x: run crashed (signal 9)" in text
