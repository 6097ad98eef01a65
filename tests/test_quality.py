"""Gate metrics, thresholds and prompts (fast, numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import ConfigError
from edgekit.quality import (
    BUILTIN_PROMPTS,
    DEFAULT_THRESHOLDS,
    classifier_metrics,
    decoder_metrics,
    encoder_metrics,
    judge,
    load_prompts,
    log_softmax,
    parse_threshold_overrides,
    prompts_digest,
    thresholds_for,
)


def test_builtin_prompts_are_many_and_varied():
    assert len(BUILTIN_PROMPTS) >= 16
    assert len(set(BUILTIN_PROMPTS)) == len(BUILTIN_PROMPTS)
    assert any("def " in p for p in BUILTIN_PROMPTS) and any(ord(c) > 0x4E00 for p in BUILTIN_PROMPTS for c in p)


def test_kl_is_zero_for_identical_and_matches_closed_form():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 11)).astype(np.float32)
    same = decoder_metrics([log_softmax(logits)], [logits])
    assert same["kl_mean"] < 1e-12 and same["top1"] == 1.0
    other = logits + rng.normal(size=logits.shape).astype(np.float32)
    m = decoder_metrics([log_softmax(logits)], [other])
    p, q = np.exp(log_softmax(logits)), np.exp(log_softmax(other))
    expected = (p * (np.log(p) - np.log(q))).sum(-1)
    assert m["kl_mean"] == pytest.approx(expected.mean(), rel=1e-9)
    assert m["kl_max"] == pytest.approx(expected.max(), rel=1e-9)
    assert m["top1"] == pytest.approx((p.argmax(-1) == q.argmax(-1)).mean())


def test_encoder_and_classifier_metrics():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    m = encoder_metrics(a, b)
    assert m["cos_min"] == pytest.approx(np.sqrt(0.5)) and m["cos_mean"] == pytest.approx((1 + np.sqrt(0.5)) / 2)
    c = classifier_metrics(np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.8, 0.2], [0.7, 0.3]]))
    assert c == {"label_agreement": 0.5, "prob_diff_max": pytest.approx(0.3)}


def test_judge_directions():
    limits = {"kl_mean": 1e-3, "top1": 0.9}
    assert judge("decoder", {"kl_mean": 1e-4, "top1": 0.95}, limits) == []
    fails = judge("decoder", {"kl_mean": 1e-2, "top1": 0.5}, limits)
    assert len(fails) == 2 and fails[0].startswith("kl_mean") and "<=" in fails[0] and ">=" in fails[1]
    assert judge("decoder", {"kl_mean": float("nan"), "top1": 1.0}, limits)  # NaN never passes


def test_thresholds_and_overrides():
    assert thresholds_for("decoder", "fp32")["kl_mean"] <= 1e-4
    assert thresholds_for("decoder", "int8")["kl_mean"] > thresholds_for("decoder", "fp32")["kl_mean"]
    assert thresholds_for("decoder", "int8", {"kl_mean": 0.5})["kl_mean"] == 0.5
    assert set(DEFAULT_THRESHOLDS["encoder"]) >= {"fp32", "int8", "int4", "fp16"}
    assert parse_threshold_overrides(["kl_mean=0.05", "top1=0.8"]) == {"kl_mean": 0.05, "top1": 0.8}
    for bad in (["kl_mean"], ["nope=1"], ["kl_mean=abc"], ["kl_mean=inf"]):
        with pytest.raises(ConfigError):
            parse_threshold_overrides(bad)
    with pytest.raises(ConfigError, match="does not apply"):
        thresholds_for("encoder", "fp32", {"kl_mean": 0.1})


def test_prompts_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("first prompt\n\n  second\\nline  \n")
    assert load_prompts(f) == ["first prompt", "second\nline"]
    assert prompts_digest(["a", "b"]) != prompts_digest(["ab"])
    f.write_text("\n \n")
    with pytest.raises(ConfigError, match="empty"):
        load_prompts(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts(tmp_path / "missing.txt")


def test_a_failed_4_bit_gate_names_a_higher_precision_likely_to_pass():
    from edgekit.errors import QualityGateError
    from edgekit.manifest import GateReport
    from edgekit.quality import higher_precision, raise_if_failed

    def failed(precision, kl):
        return GateReport(status="failed", kind="decoder", reference="test", precision=precision,
                          metrics={"kl_mean": kl, "top1": 0.5}, failures=[f"kl_mean = {kl}, needs <= 0.1"])

    assert higher_precision(failed("int4", 0.6)).startswith("int8 ")  # synthetic
    # a near miss of q4_k_m: the next GGUF type up; a far miss skips the types whose estimate still misses
    assert higher_precision(failed("q4_k_m", 0.3)).startswith("q5_k_m ")  # synthetic
    assert higher_precision(failed("q4_0", 0.9)).startswith("q6_k ")  # synthetic
    assert higher_precision(failed("f32", 0.2)) is None  # nothing above it
    with pytest.raises(QualityGateError, match="a higher precision would likely pass: int8"):
        raise_if_failed(failed("int4", 0.6), "int4")
