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

Every timing also comes as the calling thread's CPU time (``time.thread_time``):
with one thread the runtimes compute on the calling thread, so its CPU time is
the run's time on a quiet host even when a busy one keeps it waiting for a CPU
(the profiler calibrates on it then). With more threads it is not: a thread
whose sibling was preempted spins at the next barrier, and the spinning counts.
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
    model.forward_observer = lambda n, seconds: calls.append((n, seconds))  # times each forward pass
    cpu: list[tuple[int, float, float]] = []  # (tokens, thread CPU time at the start, at the end) of each forward
    inner = model._forward

    def cpu_timed(batch):
        c0 = time.thread_time()
        out = inner(batch)
        cpu.append((len(batch), c0, time.thread_time()))
        return out

    model._forward = cpu_timed
    wait0, t0 = cpu_wait_seconds(), time.perf_counter()
    try:
        result = model.generate_ids(ids, max_tokens=args.gen_tokens, ignore_eos=True)
    finally:
        del model._forward
    wall = time.perf_counter() - t0
    wait1 = cpu_wait_seconds()
    t = result.timings
    threads = args.threads or 1
    decode_cpu = [(c1 - c0) for n, c0, c1 in cpu[1:] if n == 1]
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
        "prefill_cpu_s": cpu[0][2] - cpu[0][1] if cpu else None,
        "decode_forward_cpu_s": decode_cpu,
        # the loop's own work between two decode forwards (sampling, confidence, detokenizing)
        "token_loop_cpu_s": [b[1] - a[2] for a, b in zip(cpu[1:], cpu[2:])],
        "finish_reason": result.finish_reason,
        "context_length": model.context_length,
        "cpu_wait_fraction": _wait_fraction(wait0, wait1, wall, threads),
    }


def run_encoder(model, args) -> dict:
    from edgekit.targets.detect import cpu_wait_seconds

    text = text_of_tokens(model, args.prompt_tokens)
    call = model.embed if model.kind == "encoder" else model.classify
    batches, batches_cpu = {}, {}
    wait0, t0 = cpu_wait_seconds(), time.perf_counter()
    for size in BATCH_SIZES:
        texts = [text] * size
        call(texts, batch_size=size)  # first call allocates: not timed
        lat, lat_cpu = [], []
        for _ in range(args.batch_reps):
            s, c = time.perf_counter(), time.thread_time()
            call(texts, batch_size=size)
            lat.append(time.perf_counter() - s)
            lat_cpu.append(time.thread_time() - c)
        batches[str(size)], batches_cpu[str(size)] = lat, lat_cpu
    wall = time.perf_counter() - t0
    return {
        "prompt_tokens": model.count_tokens(text),
        "batch_latencies_s": batches,
        "batch_cpu_s": batches_cpu,
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
