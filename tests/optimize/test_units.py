"""optimize without a model: candidate order, input checks, the choice, the Pareto front, OUT's guard."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import ConfigError
from edgekit.manifest import GateReport
from edgekit.optimize import decide, plan
from edgekit.optimize.report import check_out, markdown
from edgekit.optimize.schema import (
    CandidateRecord, Constraints, Counters, OptimizeReport, PlanEstimate, Settings, Speeds,
)


def test_default_candidates_go_from_high_to_low_bits_per_format():
    rows = plan.select()
    names = [(q.format, q.name) for q in rows]
    defaults = plan.DEFAULT_QUANTS
    assert names == [("gguf", n) for n in defaults["gguf"]] + [("onnx", n) for n in defaults["onnx"]]
    for fmt in ("gguf", "onnx"):
        bpw = [q.bpw for q in rows if q.format == fmt]
        assert bpw == sorted(bpw, reverse=True)


def test_restricting_formats_and_quants():
    assert [q.name for q in plan.select(["onnx"])] == ["int8", "int4"]
    # names of either format, comma-separated or repeated, in bit order whatever order they were given in
    assert [q.name for q in plan.select(None, ["q4_0,q8_0", "int8", "q4_k_m"])] == ["q8_0", "q4_k_m", "q4_0", "int8"]
    assert [q.name for q in plan.select("onnx", ["none"])] == ["fp32"]  # the ONNX exporter's name for fp32
    assert {q.format for q in plan.select(None, "all")} == {"gguf", "onnx"}
    with pytest.raises(ConfigError, match="unknown quantization 'q3_k'") as info:
        plan.select(None, ["q3_k"])  # known to the profiler, made by no exporter
    assert info.value.params == ("quants",)
    with pytest.raises(ConfigError, match="formats= leaves gguf out"):
        plan.select(["onnx"], ["q8_0"])
    with pytest.raises(ConfigError, match="unknown format 'tflite'"):
        plan.select(["tflite"])


def _cand(label: str, *, top1: float | None, size: int | None, decode: float | None, status: str = "ok",
          fits: bool = True) -> CandidateRecord:
    fmt, quant = label.split("-", 1)
    gate = None if top1 is None else GateReport(status="passed", kind="decoder", reference="test",
                                                 metrics={"top1": top1, "kl_mean": 1 - top1})
    return CandidateRecord(
        label=label, format=fmt, quant=quant, bpw=8.0, threads=4, key=label, status=status, gate=gate,
        size_bytes=size, plan=PlanEstimate(size_bytes=size or 1, memory_bytes=size or 1),
        predicted=None if decode is None else Speeds(decode_tps=decode, prefill_tps=10 * decode, ttft_s=1 / decode,
                                                     memory_bytes=size, fits=fits),
    )


def test_choice_is_the_best_on_the_objective_and_ties_go_to_the_smaller():
    a = _cand("gguf-q8_0", top1=0.94, size=145, decode=40.0)
    b = _cand("gguf-q4_k_m", top1=0.85, size=105, decode=36.0)  # 10% slower: within the tie band, and smaller
    c = _cand("onnx-int8", top1=0.96, size=160, decode=30.0)  # 25% slower: out of it
    d = _cand("gguf-q4_0", top1=0.56, size=76, decode=60.0, status="rejected")  # fastest but not ok
    cands = [a, b, c, d]
    for x in cands:
        x.objective_value = decide.objective_value(x, "decode", device=False)
    band = decide.tie_band(cands, "decode")
    assert band == decide.TIE_FLOOR
    assert decide.choose(cands, "decode", band) == (b, [b, a])
    assert decide.choose(cands, "decode", 0.0) == (a, [a])  # no band: the fastest
    for x in cands:
        x.objective_value = decide.objective_value(x, "size", device=False)
    assert decide.tie_band(cands, "size") == 0.0  # bytes are exact
    assert decide.choose(cands, "size", 0.0)[0] is b
    for x in cands:
        x.objective_value = decide.objective_value(x, "ttft", device=False)
    assert decide.choose(cands, "ttft", band) == (b, [b, a])
    assert decide.choose([d], "decode", band) == (None, [])


def test_the_tie_band_widens_to_the_measured_spread_and_the_tie_goes_to_size_then_quality():
    a = _cand("gguf-q8_0", top1=0.94, size=145, decode=40.0)
    b = _cand("gguf-q6_k", top1=0.91, size=138, decode=30.0)  # 25% slower than a
    a.spread = {"decode_tps": 0.3}  # a's runs ranged over 30% of its median: b is within that noise
    for x in (a, b):
        x.objective_value = decide.objective_value(x, "decode", device=False)
    assert decide.tie_band([a, b], "decode") == 0.3
    assert decide.choose([a, b], "decode", 0.3)[0] is b
    same = _cand("onnx-int4", top1=0.95, size=138, decode=31.0)  # as small as b, better gated
    same.objective_value = 31.0
    assert decide.choose([a, b, same], "decode", 0.3)[0] is same


def test_the_choice_reports_the_tie():
    a = _cand("gguf-q4_k_m", top1=0.85, size=105_000_000, decode=36.0, status="chosen")
    b = _cand("gguf-q8_0", top1=0.94, size=145_000_000, decode=40.0)
    r = _report([a, b], choice="gguf-q4_k_m")
    r.tie_band, r.tied = 0.15, ["gguf-q4_k_m", "gguf-q8_0"]
    text = markdown(r)
    assert "36.0 tok/s on pixel-8 (±15%)" in text
    assert "A tie: the smallest of 2 tied within ±15% on decode (the speeds' noise): gguf-q4_k_m, gguf-q8_0" in text
    assert "| ok (tied) |" in text and "| chosen: the smallest of 2 tied" in text


def test_quality_prunes_only_beyond_the_margin():
    cons = Constraints(min_top1=0.85)
    near = _cand("gguf-q5_k_m", top1=0.85 - plan.TOP1_MARGIN / 2, size=112, decode=40.0)
    far = _cand("gguf-q5_k_m", top1=0.85 - plan.TOP1_MARGIN * 2, size=112, decode=40.0)
    assert not plan.clear_miss(near, cons) and plan.clear_miss(far, cons)
    kl = Constraints(max_kl=0.1)
    worse = _cand("gguf-q5_k_m", top1=0.9, size=112, decode=40.0)
    worse.gate.metrics["kl_mean"] = 0.1 * plan.KL_MARGIN * 1.1
    assert plan.clear_miss(worse, kl)
    worse.gate.metrics["kl_mean"] = 0.1 * (1 + plan.KL_MARGIN) / 2
    assert not plan.clear_miss(worse, kl)


def test_predicted_gguf_sizes_follow_llama_cpps_fallback_types():
    """SmolLM2-135M's shape: its 576-wide rows fit no 256-weight k-quant block. The sizes llama.cpp's quantizer
    wrote for it (llama-cpp-python 0.3, from edgekit's f16): q8_0 144.8 MB, q6_k 138.4, q5_k_m 112.1,
    q4_k_m 105.5, q4_0 91.7 (the vocabulary's metadata adds about 2 MB to each)."""
    from edgekit.profiler.shape import shape_from_params

    real = {"q8_0": 144.8, "q6_k": 138.4, "q5_k_m": 112.1, "q4_k_m": 105.5, "q4_0": 91.7}
    for quant, size_mb in real.items():
        shape = shape_from_params(134_515_008, quant, layers=30, kv_heads=3, head_dim=64, heads=9, context=2048,
                                  output_params=49152 * 576, hidden=576, ffn=1536)
        assert 0.94 < shape.weight_bytes / 1e6 / size_mb < 1.0, quant  # synthetic
        naive = shape_from_params(134_515_008, quant, layers=30, kv_heads=3, head_dim=64, heads=9, context=2048)
        assert naive.weight_bytes <= shape.weight_bytes
    # a shape whose rows fit the blocks keeps the row's own bits
    fits = shape_from_params(10**9, "q4_k_m", layers=16, kv_heads=8, head_dim=64, heads=32, context=2048,
                             output_params=32000 * 2048, hidden=2048, ffn=8192)
    from edgekit import quants

    assert fits.weight_bytes < 10**9 * quants.get("q6_k").bpw / 8
    assert quants.file_bits(quants.get("q4_k_m"), [(2048, 1000)], None) == quants.get("q4_k_m").bpw
    assert quants.file_bits(quants.get("q4_k_m"), [(576, 1000)], None) == quants.get("q5_0").bpw
    assert quants.file_bits(quants.get("q4_0"), [(576, 1000)], (576, 1000)) == (4.5 + 8.5) / 2
    assert quants.file_bits(quants.get("f16"), [(576, 1000)], (576, 1000)) == 16.0


def test_pareto_front_quality_speed_size():
    a = _cand("gguf-q8_0", top1=0.94, size=145, decode=40.0)
    b = _cand("gguf-q4_k_m", top1=0.85, size=105, decode=45.0)
    c = _cand("onnx-int8", top1=0.93, size=160, decode=30.0)  # worse than a on all three: dominated
    d = _cand("gguf-q4_0", top1=None, size=None, decode=None, status="pruned")  # never exported: not a point
    front = decide.pareto([a, b, c, d], Constraints(min_top1=0.9), device=False)
    assert front == [a, b] and (a.pareto, b.pareto, c.pareto, d.pareto) == (True, True, False, False)
    # with only a KL ceiling the front is drawn on KL (lower is better): same order here, as kl = 1 - top1
    assert decide.pareto([a, b, c], Constraints(max_kl=0.2), device=False) == [a, b]


def test_misses_are_worded_with_the_numbers():
    cons = Constraints(min_top1=0.9, max_size_mb=100, min_decode=50)
    c = _cand("gguf-q8_0", top1=0.853, size=145_000_000, decode=40.0, fits=False)
    assert decide.quality_misses(c, cons) == ["top-1 0.853 < 0.9"]  # synthetic: _cand(top1=0.853)
    assert decide.size_misses(c, cons) == ["size 145 MB > 100 MB"]
    assert decide.speed_misses(c, cons, "pixel-8", 4_000_000_000, None) == [
        "memory 145 MB > pixel-8's budget 4,000 MB", "decode 40.0 tok/s < 50 on pixel-8 (predicted)"]
    assert decide.shortfall(c, cons, 10**9, False) > decide.shortfall(
        _cand("gguf-q4_0", top1=0.89, size=99_000_000, decode=49.0), cons, 10**9, False)


def test_prediction_prunes_only_beyond_the_margins(host_free_target):
    cons = Constraints(max_size_mb=100, min_decode=10)
    c = _cand("gguf-q8_0", top1=None, size=None, decode=None, status="planned")
    c.plan = PlanEstimate(size_bytes=109_000_000, memory_bytes=10**8, decode_tps=8.1)  # within both margins
    assert plan.prune_by_prediction(c, cons, host_free_target) is None
    c.plan = PlanEstimate(size_bytes=111_000_000, memory_bytes=10**8, decode_tps=8.1)
    assert plan.prune_by_prediction(c, cons, host_free_target)[0] == "max_size"
    c.plan = PlanEstimate(size_bytes=10**8, memory_bytes=10**8, decode_tps=7.9)
    code, reason = plan.prune_by_prediction(c, cons, host_free_target)
    assert code == "min_decode" and "7.9 tok/s" in reason
    c.plan = PlanEstimate(size_bytes=10**8, memory_bytes=int(7.2e9), decode_tps=None)  # no calibration: no speed
    assert plan.prune_by_prediction(c, Constraints(min_decode=10), host_free_target)[0] == "ram"


@pytest.fixture
def host_free_target():
    from edgekit.targets import load_preset

    return load_preset("raspberry-pi-5")  # app RAM budget 6.5 GB


def test_out_is_checked_before_any_work(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists") as info:
        check_out(tmp_path / "mine", force=False)
    assert set(info.value.params) == {"out", "force"}
    with pytest.raises(ConfigError, match="not an earlier optimize output"):
        check_out(tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    earlier = tmp_path / "earlier"
    (earlier / "artifact").mkdir(parents=True)
    (earlier / "optimize.json").write_text(json.dumps({"schema": "edgekit.optimize"}))
    assert check_out(earlier, force=True) == earlier  # an earlier optimize output may be replaced
    assert check_out(tmp_path / "new", force=False) == tmp_path / "new"


def _report(cands: list[CandidateRecord], choice: str | None) -> OptimizeReport:
    return OptimizeReport(
        created_at="now", edgekit_version="0", source="src", source_sha256="0" * 64, target="pixel-8",
        target_threads=4, ram_budget_bytes=4 * 10**9, constraints=Constraints(min_top1=0.9),
        settings=Settings(formats=["gguf"], quants=[c.quant for c in cands], runs=1, warmup=0, prompt_tokens=8,
                          gen_tokens=4, host_threads=1, context=4096, quality_prune=True, prompts_sha256="x"),
        candidates=cands, choice=choice, counters=Counters(candidates=len(cands)))


def test_markdown_lists_every_candidate_with_its_status():
    a = _cand("gguf-q8_0", top1=0.94, size=145_000_000, decode=40.0, status="chosen")
    b = _cand("gguf-q4_0", top1=None, size=None, decode=None, status="pruned")
    b.reason = "q4_0 has fewer bits than q4_k_m, which already misses the top-1 floor 0.9"
    report = _report([a, b], choice="gguf-q8_0")
    text = markdown(report)
    assert "| gguf-q8_0 | 8 | 0.940 |" in text and "chosen" in text
    assert "pruned: q4_0 has fewer bits than q4_k_m" in text
    assert "## Choice" in text and "**gguf-q8_0**" in text
    assert OptimizeReport.model_validate(json.loads(json.dumps(report.to_json()))) == report


def test_edgekit_optimize_is_callable_after_importing_a_submodule():
    """``edgekit.optimize(...)`` as documented, also once edgekit.optimize's submodules were imported (the CLI does)."""
    import subprocess
    import sys

    code = ("import edgekit.optimize.schema, edgekit; assert callable(edgekit.optimize); "
            "import edgekit.optimize as o; assert o.optimize is edgekit.optimize.optimize; "
            "from edgekit.errors import ConfigError\n"
            "try:\n    edgekit.optimize('x', 'pixel-8', objective='speed')\n"
            "except ConfigError as e:\n    assert e.params == ('objective',), e.params\n"
            "else:\n    raise SystemExit('no error')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
