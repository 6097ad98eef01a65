"""Router benchmark: what routing costs, and what the low-confidence threshold buys.

1. Router overhead per request vs calling the local Model directly (goal < 1 ms median):
   the same chat request, greedy, alternating direct/routed in pairs; reported as the
   median of the paired differences, and as the router's own accounting
   (``decision.overhead_s``: wall time minus time inside the local and remote calls and
   in the caller). The goal is judged on the latter: on a loaded machine the paired
   differences of requests that take hundreds of milliseconds scatter by tens of them
   (see the p90 column), while the 1-token case keeps the paired estimate tight.
2. Added latency of a fallback vs calling the remote directly (goal < 20 ms median):
   a prompt longer than the local context (routed without a local try), paired with the
   same request sent to the remote directly; and the low-confidence fallback, whose added
   latency is the local draft of ``first_k`` tokens by design (reported separately).
3. The calibration table of the packaged SmolLM2-135M-Instruct (Q4_1 GGUF) on the shipped
   labelled set: share answered locally and local accuracy, per threshold.

The remote is a real llama-cpp-python server on 127.0.0.1 serving the same GGUF. Absolute
times on a shared machine are noisy: read the paired differences, measured in one run.

    python benchmarks/router.py                 # everything (calibration: a few minutes)
    python benchmarks/router.py --pairs 20 --no-calibration
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"edgekit-bench-server-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2", "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--n_threads_batch", str(threads)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("llama_cpp.server did not start within 120 s")


def ms(x: float) -> str:
    return f"{x * 1000:8.2f}"


def paired(n: int, direct, routed) -> dict:
    """Alternate the two calls (order flipped every pair); medians of each and of the differences."""
    a, b, diffs, own = [], [], [], []
    direct(), routed()  # warm-up
    for i in range(n):
        order = (direct, routed) if i % 2 == 0 else (routed, direct)
        times = {}
        for fn in order:
            t = time.perf_counter()
            res = fn()
            times[fn] = time.perf_counter() - t
            if fn is routed:
                own.append(res.decision.overhead_s)
        a.append(times[direct])
        b.append(times[routed])
        diffs.append(times[routed] - times[direct])
    return {
        "direct": statistics.median(a), "routed": statistics.median(b), "diff": statistics.median(diffs),
        "diff_p90": sorted(diffs)[int(0.9 * (len(diffs) - 1))], "own": statistics.median(own), "n": n,
    }


def report(title: str, rows: list[tuple[str, dict]], goal_ms: float) -> None:
    """Two measures of the same cost: the paired wall-clock difference (honest but as noisy as the
    machine), and the router's own accounting (wall time minus the time spent inside the local and
    remote calls and in the caller), which the goal is judged on."""
    print(f"\n## {title}\n")
    print("| case | pairs | direct median ms | routed median ms | added, paired median ms | added, paired p90 ms "
          "| router's own median ms | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        ok = "met" if r["own"] * 1000 < goal_ms else "MISSED"
        print(f"| {name} | {r['n']} | {ms(r['direct'])} | {ms(r['routed'])} | {ms(r['diff'])} | {ms(r['diff_p90'])} | "
              f"{ms(r['own'])} | < {goal_ms:g} ms: {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=40, help="paired measurements per case")
    parser.add_argument("--threads", type=int, default=1, help="threads for the local model and the server")
    parser.add_argument("--no-calibration", action="store_true", help="skip the calibration table")
    parser.add_argument("--limit", type=int, default=None, help="calibrate on the first N questions only")
    args = parser.parse_args()

    import edgekit
    from edgekit.packaged import smollm2_gguf_path
    from edgekit.router import CircuitBreaker, Policy, Router
    from edgekit.router.remote import RemoteLLM

    gguf = smollm2_gguf_path()
    proc, url = start_server(gguf, args.threads)
    try:
        local = edgekit.load(gguf, threads=args.threads)
        small = edgekit.load(gguf, threads=args.threads, context=256)
        remote = RemoteLLM(url, "smollm2", timeout=120)
        print(f"# edgekit router benchmark\n\nlocal: {gguf.name} (llama.cpp, {args.threads} thread(s)); "
              f"remote: llama-cpp-python server at {url} serving the same file; python {sys.version.split()[0]}")

        sure = [{"role": "user", "content": "What is the chemical symbol for silver?"}]
        router = Router(local, remote, Policy(), breaker=CircuitBreaker())
        assert router.chat(sure, max_tokens=8).decision.tier == "local"
        rows = [
            ("chat, 1 token, answered locally", paired(4 * args.pairs, lambda: local.chat(sure, max_tokens=1),
                                                       lambda: router.chat(sure, max_tokens=1))),
            ("chat, up to 8 tokens, answered locally", paired(args.pairs, lambda: local.chat(sure, max_tokens=8),
                                                              lambda: router.chat(sure, max_tokens=8))),
            ("chat, 32 tokens, answered locally", paired(args.pairs, lambda: local.chat(sure, max_tokens=32, ignore_eos=True),
                                                         lambda: router.chat(sure, max_tokens=32, ignore_eos=True))),
        ]

        def drain(stream):
            for _ in stream:
                pass
            return stream

        class _Direct:  # give the direct stream the same shape as a routed one
            def __init__(self, events):
                self.events = events

        rows.append(("stream_chat, 32 tokens, answered locally", paired(
            args.pairs, lambda: _Direct(list(local.stream_chat(sure, max_tokens=32, ignore_eos=True))),
            lambda: drain(router.stream_chat(sure, max_tokens=32, ignore_eos=True)))))
        report("1. Router overhead per request vs the local Model directly", rows, 1.0)

        long = [{"role": "user", "content": "Summarise: " + "the quick brown fox jumps over the lazy dog " * 36}]
        over = Router(small, remote, Policy())
        assert over.chat(long, max_tokens=8).decision.trigger == "context_overflow"
        unsure = [{"role": "user", "content": "Which animal is known as the king of the jungle?"}]
        low = Router(local, remote, Policy())
        assert low.chat(unsure, max_tokens=16).decision.trigger == "low_confidence"
        rows = [
            ("context overflow -> remote (no local try)", paired(
                args.pairs, lambda: remote.chat(long, max_tokens=8), lambda: over.chat(long, max_tokens=8))),
        ]
        report("2. Added latency of a fallback vs calling the remote directly", rows, 20.0)
        lowc = paired(args.pairs, lambda: remote.chat(unsure, max_tokens=16), lambda: low.chat(unsure, max_tokens=16))
        drafts = [low.chat(unsure, max_tokens=16).decision.local_s for _ in range(5)]
        print(f"\nlow confidence -> remote: added median {ms(lowc['diff']).strip()} ms over the remote alone "
              f"(n={lowc['n']}), of which the local draft of {Policy().first_k} tokens takes "
              f"{ms(statistics.median(drafts)).strip()} ms; the router's own share: {ms(lowc['own']).strip()} ms. "
              "The draft is the price of the check, not routing overhead.")
        small.close()
        if not args.no_calibration:
            calibration_table(local, args.limit)
        local.close()
        remote.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def calibration_table(local, limit: int | None) -> None:
    from edgekit.router import Policy
    from edgekit.router import calibration as cal

    policy = Policy()
    questions = cal.load_questions(cal.shipped_set(), limit)
    t = time.perf_counter()
    samples = cal.run_calibration(local, questions, policy)
    elapsed = time.perf_counter() - t
    stats = cal.summary(samples)
    counts = ", ".join(f"{k}: {v['questions']}" for k, v in stats["by_kind"].items())
    accs = ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in stats["by_kind"].items())
    print("\n## 3. Calibration: packaged SmolLM2-135M-Instruct (Q4_1 GGUF) on the shipped set\n")
    print(f"{stats['questions']} questions ({counts}), score = {policy.metric_name()}, greedy, {elapsed:.0f} s. "
          f"Local accuracy on all: {stats['accuracy']:.1%} ({accs}); "
          f"AUROC of the score for right vs wrong answers: {stats['auroc']:.3f}.\n")
    print("| threshold | answered locally | local share | local accuracy |")
    print("|---|---|---|---|")
    for r in cal.threshold_table(samples):
        acc = f"{r.local_accuracy:.1%}" if r.local_accuracy is not None else "-"
        mark = " (default)" if abs(r.threshold - policy.threshold) < 1e-9 else ""
        print(f"| {r.threshold:.2f}{mark} | {r.local_n} | {r.local_share:.1%} | {acc} |")
    for target in (0.6, 0.7, 0.8):
        row, reached = cal.choose_threshold(cal.threshold_table(samples), target, 10)
        if row is not None:
            print(f"\ntarget {target:.0%} (at least 10 local answers): threshold {row.threshold:.2f}, "
                  f"{row.local_share:.1%} local at {row.local_accuracy:.1%}{'' if reached else ' (target not reached)'}", end="")
    print()


if __name__ == "__main__":
    main()
