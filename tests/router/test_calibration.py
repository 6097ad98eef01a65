"""Calibration: answer matching, the shipped labelled set, the threshold table and a real run."""

from __future__ import annotations

import json
import re

import pytest

from edgekit.errors import ConfigError
from edgekit.router import Policy
from edgekit.router.calibration import (
    Sample,
    auroc,
    choose_threshold,
    is_correct,
    load_questions,
    normalise,
    run_calibration,
    shipped_set,
    threshold_table,
)


@pytest.mark.parametrize("answer,refs,ok", [
    ("The capital of France is Paris.", ["Paris"], True),
    ("Parisian food is great", ["Paris"], False),  # whole words only
    ("17 * 23 = 381", ["391"], False),
    ("It equals 1,000 grams.", ["1000"], True),
    ("A spider has eight legs.", ["8", "eight"], True),
    ("The answer is 10.", ["0"], False),
    ("New Delhi", ["Delhi"], True),
    ("The Mona Lisa was painted by Leonardo da Vinci", ["da Vinci"], True),
    ("pi is 3.14", ["3.14"], True),
])
def test_is_correct(answer, refs, ok):
    assert is_correct(answer, refs) is ok


def test_exact_mode_wants_the_whole_answer():
    assert is_correct("Paris.", ["Paris"], "exact")
    assert not is_correct("It is Paris.", ["Paris"], "exact")
    assert normalise("The Eiffel-Tower, in 1889!") == ["eiffel", "tower", "in", "1889"]


def test_the_shipped_set_is_sound():
    qs = load_questions(shipped_set())
    assert len(qs) >= 300
    assert len({q.id for q in qs}) == len(qs) and len({q.question for q in qs}) == len(qs)
    kinds = {q.kind for q in qs}
    assert kinds == {"factual", "arithmetic"}
    ops = {"+": int.__add__, "plus": int.__add__, "-": int.__sub__, "minus": int.__sub__, "times": int.__mul__,
           "multiplied by": int.__mul__, "divided by": int.__floordiv__}
    checked = 0
    for q in qs:
        # no reference may be given away by the question itself
        assert not is_correct(q.question, q.answers), q.question
        if q.kind != "arithmetic":
            continue
        if m := re.fullmatch(r"What is (\d+) (\+|plus|-|minus|times|multiplied by|divided by) (\d+)\?", q.question):
            a, op, b = int(m[1]), m[2], int(m[3])
            if op == "divided by":
                assert a % b == 0
            value = ops[op](a, b)
        elif m := re.fullmatch(r"What is (\d+) squared\?", q.question):
            value = int(m[1]) ** 2
        elif m := re.fullmatch(r"What is double (\d+)\?", q.question):
            value = 2 * int(m[1])
        elif m := re.fullmatch(r"What is half of (\d+)\?", q.question):
            value = int(m[1]) // 2
        else:
            raise AssertionError(f"unparsed arithmetic question {q.question!r}")
        assert q.answers[0] == str(value), q.question
        checked += 1
    assert checked >= 140


def test_bad_data_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "answer": "b"}\n{"question": "c?"\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2 is not valid JSON"):
        load_questions(bad)
    bad.write_text('{"question": "a?", "answer": ""}\n')
    with pytest.raises(ConfigError, match=r":1 needs"):
        load_questions(bad)
    bad.write_text("\n")
    with pytest.raises(ConfigError, match="no questions"):
        load_questions(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps({"question": f"q{i}?", "answer": i, "aliases": [f"n{i}"]}) for i in range(5)))
    qs = load_questions(good, limit=3)
    assert [q.answers for q in qs] == [("0", "n0"), ("1", "n1"), ("3", "n3")]  # spread over the file


def _s(score, correct):
    return Sample("id", "k", "q", "r", "a", correct, score)


def test_threshold_table_and_choice():
    samples = [_s(0.9, True), _s(0.8, True), _s(0.7, False), _s(0.6, True), _s(0.3, False), _s(0.1, False)]
    rows = threshold_table(samples, [0.0, 0.5, 0.75, 0.95])
    assert [(r.local_n, r.escalated_n) for r in rows] == [(6, 0), (4, 2), (2, 4), (0, 6)]
    assert rows[0].local_accuracy == pytest.approx(0.5) and rows[1].local_accuracy == pytest.approx(0.75)
    assert rows[3].local_accuracy is None and rows[1].local_share == pytest.approx(4 / 6)
    row, reached = choose_threshold(rows, 0.7)
    assert reached and row.threshold == 0.5  # the lowest threshold that reaches the target
    row, reached = choose_threshold(rows, 0.7, min_local=5)
    assert not reached and row.threshold == 0.0  # only one row has 5 local answers: best available
    assert choose_threshold(rows, 0.7, min_local=7) == (None, False)
    assert auroc([s.score for s in samples], [s.correct for s in samples]) == pytest.approx(8 / 9)


@pytest.mark.slow
def test_a_real_calibration_run(local_gguf):
    qs = [q for q in load_questions(shipped_set()) if q.id in ("fact-042", "fact-140", "math-001", "fact-129")]
    policy = Policy()
    samples = run_calibration(local_gguf, qs, policy, max_tokens=16)
    by_id = {s.id: s for s in samples}
    assert by_id["fact-042"].correct and by_id["fact-042"].score >= policy.threshold  # silver: Ag, sure
    assert not by_id["fact-140"].correct and by_id["fact-140"].score < policy.threshold  # the jaguar, unsure
    for s in samples:
        assert len(s.probs) == policy.first_k and s.score == pytest.approx(policy.score(s.probs), abs=1e-5)
    with pytest.raises(ConfigError, match="first_k"):
        run_calibration(local_gguf, qs, policy, max_tokens=4)
