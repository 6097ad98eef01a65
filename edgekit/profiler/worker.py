"""One bench run, in its own process: ``python -m edgekit.profiler.worker ARTIFACT [options]``.

The parent (bench.py) starts one fresh process per run so that every run pays
the same load cost and the kernel's peak-RSS accounting (``wait4``) covers
exactly one model load and one generation. This module prints one JSON object
on its last stdout line: the run's measurements, or ``{"error": ...}`` with exit
status 2 for a user error (bad artifact, prompt longer than the context) and 1
for a backend failure.

Decoders: a prompt of exactly ``--prompt-tokens`` ids (a long text tokenized and
cut) and ``generate_ids(..., max_tokens=--gen-tokens, ignore_eos=True)``, so the
token counts are the requested ones. The backend's ``_forward`` is wrapped with
a timer: the report separates the model's time per token from the loop's own
time (sampling, confidence, detokenization), which the roofline needs.
Encoders: ``embed`` (or ``classify``) of batches of 1, 8 and 32 texts of about
``--prompt-tokens`` tokens, one untimed call per batch size and then
``--batch-reps`` timed calls.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

T_START = time.perf_counter()

TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, counting the worn stone steps "
    "as his father had taught him. From the lantern room he could see the whole bay: fishing boats returning "
    "with the tide, gulls circling above the harbour, and far to the west the dark line of the islands where "
    "storms were born. He trimmed the wick, polished the great lens until it shone, and wrote the weather in "
    "his log in small careful letters. Ships he would never meet relied on that light, and he liked to think "
    "of them out there, sailors reading his signal and knowing where the rocks were. "
)
BATCH_SIZES = (1, 8, 32)


def prompt_ids(model, n: int) -> list[int]:
    """Exactly ``n`` token ids of natural text."""
    text = TEXT
    ids = model.tokenize(text)
    while len(ids) < n:
        text += TEXT
        ids = model.tokenize(text)
    return ids[:n]


def text_of_tokens(model, n: int) -> str:
    """The longest prefix of the text (in words) that tokenizes to at most ``n`` tokens."""
    words = (TEXT * (1 + n // 40)).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if model.count_tokens(" ".join(words[:mid])) <= n:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def run_decoder(model, args) -> dict:
    from edgekit.targets.detect import cpu_wait_seconds

    ids = prompt_ids(model, args.prompt_tokens)
    calls: list[tuple[int, float]] = []
    inner = model._forward

    def timed_forward(batch):
        t0 = time.perf_counter()
        out = inner(batch)
        calls.append((len(batch), time.perf_counter() - t0))
        return out

    model._forward = timed_forward  # instrumentation only: the backend's own forward still runs
    wait0, t0 = cpu_wait_seconds(), time.perf_counter()
    result = model.generate_ids(ids, max_tokens=args.gen_tokens, ignore_eos=True)
    wall = time.perf_counter() - t0
    wait1 = cpu_wait_seconds()
    t = result.timings
    threads = args.threads or 1
    return {
        "prompt_tokens": t.prompt_tokens,
        "generated_tokens": len(result.token_ids),
        "decode_tokens": t.decode_tokens,
        "prefill_s": t.prefill_s,
        "ttft_s": t.ttft_s,
        "decode_s": t.decode_s,
        "prefill_tps": t.prefill_tps,
        "decode_tps": t.decode_tps,
        "token_latencies_s": t.token_latencies_s,
        "prefill_forward_s": calls[0][1] if calls else 0.0,
        "decode_forward_s": [dt for n, dt in calls[1:] if n == 1],
        "finish_reason": result.finish_reason,
        "context_length": model.context_length,
        "cpu_wait_fraction": _wait_fraction(wait0, wait1, wall, threads),
    }


def run_encoder(model, args) -> dict:
    from edgekit.targets.detect import cpu_wait_seconds

    text = text_of_tokens(model, args.prompt_tokens)
    call = model.embed if model.kind == "encoder" else model.classify
    batches = {}
    wait0, t0 = cpu_wait_seconds(), time.perf_counter()
    for size in BATCH_SIZES:
        texts = [text] * size
        call(texts, batch_size=size)  # first call allocates: not timed
        lat = []
        for _ in range(args.batch_reps):
            s = time.perf_counter()
            call(texts, batch_size=size)
            lat.append(time.perf_counter() - s)
        batches[str(size)] = lat
    wall = time.perf_counter() - t0
    return {
        "prompt_tokens": model.count_tokens(text),
        "batch_latencies_s": batches,
        "cpu_wait_fraction": _wait_fraction(wait0, cpu_wait_seconds(), wall, args.threads or 1),
    }


def _current_rss() -> int | None:
    """Resident bytes now (after imports, before the model loads): the interpreter and libraries."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _wait_fraction(w0, w1, wall, threads) -> float | None:
    if w0 is None or w1 is None or wall <= 0:
        return None
    return max(0.0, (w1 - w0) / (wall * threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.profiler.worker", description="one edgekit bench run")
    parser.add_argument("artifact")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--batch-reps", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        from edgekit.errors import EdgekitError, UserError
    except ImportError as exc:  # pragma: no cover - broken install
        print(json.dumps({"error": {"type": "ImportError", "message": str(exc), "user": False}}))
        return 1
    try:
        t_import = time.perf_counter()
        import edgekit.runtimes as rt

        base_rss = _current_rss()
        t_load = time.perf_counter()
        model = rt.load(args.artifact, threads=args.threads, context=args.context)
        load_s = time.perf_counter() - t_load
        out = {"kind": model.kind, "backend": model.backend, "threads": args.threads,
               "startup_s": t_import - T_START, "import_s": t_load - t_import, "load_s": load_s,
               "base_rss_bytes": base_rss}
        out.update(run_decoder(model, args) if model.kind == "decoder" else run_encoder(model, args))
        model.close()
        out["heavy_modules"] = sorted(m for m in ("torch", "transformers", "optimum") if m in sys.modules)
    except EdgekitError as exc:
        print(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc), "user": isinstance(exc, UserError)}}))
        sys.stdout.flush()
        return 2 if isinstance(exc, UserError) else 1
    print(json.dumps(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
