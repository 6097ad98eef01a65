"""Calibrate the low-confidence threshold on labelled questions.

Why: a threshold on token probability means nothing until it is tied to
accuracy. ``calibrate`` runs the local model on questions with known answers,
records each answer's confidence score (the policy's quantile of the first K
token probabilities, exactly what the router computes) and whether it is
correct, and tabulates, for a range of thresholds, the share of questions the
local model would answer and its accuracy on that share. The chosen threshold
is the lowest one (the largest local share) whose local accuracy reaches the
target.

Data: JSON Lines, one question per line, ``{"question": ..., "answer": ...}``
with optional ``"aliases": [...]`` (other accepted answers), ``"id"`` and
``"kind"``. edgekit ships a set of short factual and arithmetic questions
(:func:`shipped_set`).

Correctness is a normalised match: lower case, punctuation and articles
dropped, number words up to twenty read as digits, thousands separators
removed; ``contains`` accepts an answer holding a reference as whole words
(small models restate the question: "The capital of France is Paris."),
``exact`` wants the whole answer to be a reference.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from edgekit.errors import ConfigError
from edgekit.fileio import not_a_file, parse_json
from edgekit.progress import Progress, ensure
from edgekit.router.policy import Policy

if TYPE_CHECKING:
    from edgekit.runtimes.tier import Tier

_NUMBER_WORDS = {
    w: str(i) for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_ARTICLES = {"a", "an", "the"}
DEFAULT_THRESHOLDS = tuple(round(i * 0.05, 2) for i in range(20))


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[str, ...]
    id: str = ""
    kind: str = ""


@dataclass
class Sample:
    """One question's outcome: the local answer, its confidence score and whether it is right."""

    id: str
    kind: str
    question: str
    reference: str
    answer: str
    correct: bool
    score: float
    probs: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    threshold: float
    local_n: int
    local_share: float
    local_accuracy: float | None  # None when nothing is answered locally
    escalated_n: int


def shipped_set() -> Path:
    """The labelled questions edgekit ships (package data)."""
    from importlib.resources import files

    path = Path(str(files("edgekit") / "data" / "calibration.jsonl"))
    if not path.is_file():
        raise ConfigError(f"the shipped calibration set {path} is missing: reinstall edgekit")
    return path


def load_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """Read a JSON Lines file of questions; a bad line is a one-line ConfigError naming it.

    ``limit`` keeps that many questions spread evenly over the file (always the same ones),
    so that a quick run sees every kind of question, not just the first block.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"the calibration data {path} {not_a_file(path)}: pass a .jsonl file of question/answer lines")
    out: list[Question] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{n} is not valid JSON ({getattr(exc, 'msg', exc)})") from exc
        if not isinstance(row, dict):
            raise ConfigError(f"{path}:{n} must be an object with 'question' and 'answer'")
        q, a, aliases = row.get("question"), row.get("answer"), row.get("aliases", [])
        if not isinstance(q, str) or not q.strip() or not isinstance(a, (str, int, float)) or isinstance(a, bool) or str(a) == "":
            raise ConfigError(f"{path}:{n} needs a non-empty string 'question' and an 'answer'")
        if not isinstance(aliases, list) or not all(isinstance(x, (str, int, float)) for x in aliases):
            raise ConfigError(f"{path}:{n}: 'aliases' must be a list of strings")
        out.append(Question(q.strip(), tuple(str(x) for x in [a, *aliases]), str(row.get("id", n)), str(row.get("kind", ""))))
    if not out:
        raise ConfigError(f"{path} holds no questions")
    if limit is not None and limit < len(out):
        out = [out[i * len(out) // limit] for i in range(limit)]
    return out


def normalise(text: str) -> list[str]:
    text = text.lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = re.sub(r"\.(?!\d)", " ", text)  # keep decimal points
    text = re.sub(r"[^\w\s.]", " ", text)
    return [_NUMBER_WORDS.get(w, w) for w in text.replace("_", " ").split() if w not in _ARTICLES]


def is_correct(answer: str, references: Iterable[str], mode: str = "contains") -> bool:
    words = normalise(answer)
    for ref in references:
        target = normalise(ref)
        if not target:
            continue
        if mode == "exact":
            if words == target:
                return True
        elif any(words[i : i + len(target)] == target for i in range(len(words) - len(target) + 1)):
            return True
    return False


def run_calibration(model: Tier, questions: Sequence[Question], policy: Policy, *, system: str | None = None,
                    max_tokens: int = 24, match: str = "contains", progress: Progress | None = None) -> list[Sample]:
    """Ask ``model`` (any tier) every question through its chat template (greedy), score and grade each answer.

    The score needs token probabilities: a remote tier has none, so its answers all score 0.
    """
    if match not in ("contains", "exact"):
        raise ConfigError(f"match must be 'contains' or 'exact', got {match!r}")
    if max_tokens < policy.first_k:
        raise ConfigError(f"max_tokens ({max_tokens}) must be at least first_k ({policy.first_k})")
    progress = ensure(progress)
    samples = []
    with progress.step(f"asking {len(questions)} questions", total=len(questions)) as step:
        for q in questions:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q.question}]
            res = model.chat(messages, max_tokens=max_tokens)
            answer = res.text.strip()
            samples.append(Sample(
                q.id, q.kind, q.question, q.answers[0], answer, is_correct(answer, q.answers, match),
                policy.score(res.probs), [round(p, 6) for p in res.probs[: policy.first_k]],
            ))
            step.advance()
    return samples


def threshold_table(samples: Sequence[Sample], thresholds: Iterable[float] = DEFAULT_THRESHOLDS) -> list[Row]:
    rows = []
    n = len(samples)
    for t in thresholds:
        kept = [s for s in samples if s.score >= t]
        acc = sum(s.correct for s in kept) / len(kept) if kept else None
        rows.append(Row(float(t), len(kept), len(kept) / n if n else 0.0, acc, n - len(kept)))
    return rows


def choose_threshold(rows: Sequence[Row], target_accuracy: float, min_local: int = 1) -> tuple[Row | None, bool]:
    """(row, reached): the lowest threshold whose local accuracy reaches the target with at least ``min_local``
    answers; when none does, the most accurate such row (``reached`` False); None when no row qualifies."""
    eligible = [r for r in rows if r.local_n >= max(1, min_local) and r.local_accuracy is not None]
    for r in sorted(eligible, key=lambda r: r.threshold):
        if r.local_accuracy >= target_accuracy:
            return r, True
    if not eligible:
        return None, False
    return max(eligible, key=lambda r: (r.local_accuracy, r.local_share)), False


def summary(samples: Sequence[Sample]) -> dict:
    n = len(samples)
    by_kind: dict[str, list[Sample]] = {}
    for s in samples:
        by_kind.setdefault(s.kind or "-", []).append(s)
    return {
        "questions": n,
        "accuracy": sum(s.correct for s in samples) / n if n else 0.0,
        "by_kind": {k: {"questions": len(v), "accuracy": sum(s.correct for s in v) / len(v)} for k, v in sorted(by_kind.items())},
        "auroc": auroc([s.score for s in samples], [s.correct for s in samples]),
    }


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Probability that a right answer scores above a wrong one (0.5 = the score says nothing)."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def samples_as_dicts(samples: Sequence[Sample]) -> list[dict]:
    return [asdict(s) for s in samples]
