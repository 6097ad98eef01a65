"""Judging candidates: what each misses, the objective, the choice, the Pareto front, the closest misses.

A candidate's speed on the target is what was measured there (``device=``), else the
roofline's prediction for the target from the host calibration. The objective picks
the best among the candidates that meet every constraint (decode and prefill: most
tokens/s; ttft: least seconds; size: fewest bytes); candidates within the measurements'
noise of the best (:func:`tie_band`) are tied, and the tie goes to the smaller artifact,
then the better gated.
The Pareto front is over every candidate with gate metrics and a speed: quality (top-1,
or mean KL when only a KL ceiling is given), speed (the objective's, decode for size)
and size; a candidate is on it when no other is at least as good on all three and
better on one.
"""

from __future__ import annotations

from edgekit.optimize.plan import mb
from edgekit.optimize.schema import CandidateRecord, Constraints, Speeds


def speeds(c: CandidateRecord, device: bool) -> Speeds | None:
    """The speeds a candidate is judged on: measured on the device, else predicted for the target."""
    return c.measured if device else c.predicted


def quality_misses(c: CandidateRecord, cons: Constraints) -> list[str]:
    out = []
    top1, kl = c.metric("top1"), c.metric("kl_mean")
    if cons.min_top1 is not None and top1 is not None and top1 < cons.min_top1:
        out.append(f"top-1 {top1:.3f} < {cons.min_top1:g}")
    if cons.max_kl is not None and kl is not None and kl > cons.max_kl:
        out.append(f"KL {kl:.4g} > {cons.max_kl:g}")
    return out


def size_misses(c: CandidateRecord, cons: Constraints) -> list[str]:
    if cons.max_size_mb is not None and c.size_bytes is not None and c.size_bytes > cons.max_size_mb * 1e6:
        return [f"size {mb(c.size_bytes)} > {cons.max_size_mb:g} MB"]
    return []


def speed_misses(c: CandidateRecord, cons: Constraints, target: str, budget: int, device: str | None) -> list[str]:
    s = speeds(c, device is not None)
    if s is None:
        return []
    out = []
    where = f"on {device} (measured)" if device else f"on {target} (predicted)"
    if s.fits is False:
        out.append(f"memory {mb(s.memory_bytes)} > {target}'s budget {mb(budget)}")
    if cons.min_decode is not None and s.decode_tps is not None and s.decode_tps < cons.min_decode:
        out.append(f"decode {s.decode_tps:.1f} tok/s < {cons.min_decode:g} {where}")
    return out


def objective_value(c: CandidateRecord, objective: str, device: bool) -> float | None:
    """The objective's number (higher is better for decode/prefill, lower for size/ttft)."""
    if objective == "size":
        return float(c.size_bytes) if c.size_bytes is not None else None
    s = speeds(c, device)
    if s is None:
        return None
    return {"decode": s.decode_tps, "prefill": s.prefill_tps, "ttft": s.ttft_s}[objective]


def better(objective: str, a: float, b: float) -> bool:
    """Whether objective value ``a`` beats ``b``."""
    return a < b if objective in ("size", "ttft") else a > b


# Speeds of separate runs on a shared host move by more than one bench's runs show: three cold optimize runs of
# SmolLM2 for the Raspberry Pi 5 on a 2-core host predicted its front candidates at 31-36 tok/s, each run in
# another order (three runs, three choices). Candidates within this fraction of the best are tied, or within
# the spread the benches measured where that is wider; sizes are exact (bytes), so "size" has no band.
TIE_FLOOR = 0.15
# On a host busy enough that the benches wait for a CPU, each runtime's calibration carries the load of its own
# moment: with two processes spinning on a 2-core host (the benches waiting about a third of their time), the
# predicted Pi 5 decode of SmolLM2's ONNX int8 against its GGUF q6_k moved between 1.33x and 0.89x from one run
# to the next, the GGUFs among themselves by 9%. There the band is this wide, and the report says why.
BUSY_WAIT, BUSY_BAND = 0.10, 0.35
_SPREAD_KEY = {"decode": "decode_tps", "prefill": "prefill_tps", "ttft": "ttft_s"}


def busy_wait(cands: list[CandidateRecord]) -> float | None:
    """The largest share of time a bench of ``cands`` waited for a CPU (None: none recorded)."""
    waits = [c.cpu_wait for c in cands if c.cpu_wait is not None]
    return max(waits) if waits else None


def tie_band(cands: list[CandidateRecord], objective: str) -> float:
    """The fraction of the best objective value within which candidates count as equal: the widest relative
    range of their measured runs, at least :data:`TIE_FLOOR`, or :data:`BUSY_BAND` when a bench waited more than
    :data:`BUSY_WAIT` of its time for a CPU (0 for the size objective)."""
    if objective == "size":
        return 0.0
    key = _SPREAD_KEY[objective]
    ok = [c for c in cands if c.status == "ok"]
    floor = BUSY_BAND if (busy_wait(ok) or 0.0) > BUSY_WAIT else TIE_FLOOR
    return max([floor, *(c.spread.get(key, 0.0) for c in ok)])


def _quality_key(c: CandidateRecord) -> tuple[float, float]:
    top1, kl = c.metric("top1"), c.metric("kl_mean")
    return (-(top1 if top1 is not None else 0.0), kl if kl is not None else float("inf"))


def choose(cands: list[CandidateRecord], objective: str, band: float = 0.0
           ) -> tuple[CandidateRecord | None, list[CandidateRecord]]:
    """(the choice, the candidates tied with the best): the ``ok`` candidates within ``band`` (a fraction) of the
    best objective value are tied, and the tie goes to the smallest artifact, then the best gate (top-1, then KL):
    a rule that measurement noise cannot move."""
    ok = [c for c in cands if c.status == "ok" and c.objective_value is not None]
    if not ok:
        return None, []
    sign = 1.0 if objective in ("size", "ttft") else -1.0
    best = min(sign * c.objective_value for c in ok)
    tied = [c for c in ok if sign * c.objective_value - best <= band * abs(best)]
    tied.sort(key=lambda c: (c.size_bytes or 0, *_quality_key(c), sign * c.objective_value))
    return tied[0], tied


def quality_axis(cons: Constraints) -> tuple[str, bool]:
    """(gate metric, higher is better) the front is drawn on."""
    if cons.max_kl is not None and cons.min_top1 is None:
        return "kl_mean", False
    return "top1", True


def pareto(cands: list[CandidateRecord], cons: Constraints, device: bool) -> list[CandidateRecord]:
    """The candidates no other beats on quality, speed and size at once (marks ``pareto``)."""
    metric, up = quality_axis(cons)
    speed_of = "decode" if cons.objective == "size" else cons.objective
    pts = []
    for c in cands:
        q, s = c.metric(metric), objective_value(c, speed_of, device)
        if q is None or s is None or c.size_bytes is None:
            continue
        speed = -s if speed_of == "ttft" else s  # larger is better on every axis below
        pts.append((c, q if up else -q, speed, -float(c.size_bytes)))
    front = []
    for c, *v in pts:
        dominated = any(all(o >= m for o, m in zip(w, v)) and any(o > m for o, m in zip(w, v))
                        for d, *w in pts if d is not c)
        c.pareto = not dominated
        if not dominated:
            front.append(c)
    return front


def shortfall(c: CandidateRecord, cons: Constraints, budget: int, device: bool) -> float:
    """How far ``c`` is from meeting every constraint: the sum of its relative misses (measured, else estimated)."""
    def over(value, limit):  # relative amount by which value exceeds limit
        return max(0.0, (value - limit) / limit) if value is not None and limit else 0.0

    s = speeds(c, device)
    total = 0.0
    if cons.min_top1 is not None and c.metric("top1") is not None:
        total += over(cons.min_top1, c.metric("top1"))
    if cons.max_kl is not None and c.metric("kl_mean") is not None:
        total += over(c.metric("kl_mean"), cons.max_kl)
    if cons.max_size_mb is not None:
        total += over((c.size_bytes or c.plan.size_bytes) / 1e6, cons.max_size_mb)
    total += over(s.memory_bytes if s is not None and s.memory_bytes else c.plan.memory_bytes, budget)
    decode = s.decode_tps if s is not None else c.plan.decode_tps
    if cons.min_decode is not None and decode:
        total += over(cons.min_decode, decode)
    return total


def closest(cands: list[CandidateRecord], cons: Constraints, budget: int, device: bool,
            limit: int = 4) -> list[CandidateRecord]:
    """The candidates nearest to meeting every constraint: exported ones first (their quality is known), then by
    the sum of their relative misses."""
    def score(c: CandidateRecord):
        return (c.gate is None, c.status == "failed", shortfall(c, cons, budget, device))

    return sorted([c for c in cands if c.misses], key=score)[:limit]


def closest_lines(cands: list[CandidateRecord], cons: Constraints, budget: int, device: bool) -> list[str]:
    lines = []
    for c in closest(cands, cons, budget, device):
        facts = []
        if c.gate is not None and "top1" in c.gate.metrics:
            facts.append(f"top-1 {c.gate.metrics['top1']:.3f}")
        facts.append(mb(c.size_bytes) if c.size_bytes is not None else f"~{mb(c.plan.size_bytes)} predicted")
        what = "pruned" if c.status == "pruned" else "misses"
        lines.append(f"{c.label} ({', '.join(facts)}): {what}: {'; '.join(c.misses)}")
    return lines
