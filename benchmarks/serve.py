"""Server benchmark: what ``edgekit serve`` costs over calling the Model in process, and how it compares
with llama-cpp-python's own OpenAI server on the same GGUF with the same settings.

1. Overhead, paired: the same streamed chat request, alternately in process (``Model.stream_chat``)
   and through the API (SSE over loopback), order flipped every pair. Time to first token (first
   non-empty text) and tokens/s after it, ``ignore_eos`` so both make exactly ``--tokens`` tokens.
   Goals: TTFT overhead < 5 ms (median of the paired differences), tokens/s through the API >= 0.95x.
2. Concurrency: 1, 4 and 16 clients, each sending requests back to back (streamed, greedy, a
   unique system line per request so that llama-cpp-python's prefix cache cannot reuse a previous
   prompt), against ``edgekit serve`` and ``python -m llama_cpp.server``, each in its own process
   with the same file, context and threads: requests/s, latency p50/p99, TTFT p50 and tokens/s.
   Goal: edgekit >= 1.0x llama-cpp-python's server in requests/s at every concurrency. The servers
   take turns (``--rounds``, order flipped each round) and each side's rounds are pooled.

Both servers answer one request at a time (one model each), so with more clients requests queue;
that is the point of the comparison. Absolute times on a shared machine are noisy: read the paired
differences and the ratios, measured in one run.

    python benchmarks/serve.py                          # packaged SmolLM2-135M-Instruct, 1 thread
    python benchmarks/serve.py --pairs 40 --tokens 64 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a long story about a dragon who learns to bake bread."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], ready_url: str, name: str) -> subprocess.Popen:
    import httpx

    log = open(Path(tempfile.gettempdir()) / f"edgekit-bench-{name}.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"{name} did not start within 180 s; see {log.name}")


def messages(i: int | None = None) -> list[dict]:
    system = "You are a storyteller." if i is None else f"{i}: you are a storyteller."  # unique from its 3rd token
    return [{"role": "system", "content": system}, {"role": "user", "content": PROMPT}]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


# ---- 1. paired overhead ---------------------------------------------------------------------------
def in_process(model, tokens: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for ev in model.stream_chat(messages(), max_tokens=tokens, ignore_eos=True):
        now = time.perf_counter()
        n += 1
        if first is None and ev.text:
            first, n_first = now, n
        last = now
    return first - t0, (n - n_first) / (last - first)


def through_api(client, url: str, tokens: int) -> tuple[float, float]:
    body = {"model": "m", "messages": messages(), "max_tokens": tokens, "ignore_eos": True, "stream": True}
    t0 = time.perf_counter()
    first = last = None
    n = n_first = 0
    with client.stream("POST", url + "/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if not chunk.get("choices") or chunk["choices"][0]["delta"].get("content") is None:
                continue
            now = time.perf_counter()
            n += 1
            if first is None and chunk["choices"][0]["delta"]["content"]:
                first, n_first = now, n
            last = now
    return first - t0, (n - n_first) / (last - first)


def overhead(model, url: str, pairs: int, tokens: int) -> dict:
    import httpx

    with httpx.Client(timeout=300) as client:
        in_process(model, tokens), through_api(client, url, tokens)  # warm-up
        ttft_diff, tps_ratio, local_ttft, api_ttft, local_tps, api_tps = [], [], [], [], [], []
        for i in range(pairs):
            order = ("local", "api") if i % 2 == 0 else ("api", "local")
            got = {}
            for side in order:
                got[side] = in_process(model, tokens) if side == "local" else through_api(client, url, tokens)
            local_ttft.append(got["local"][0])
            api_ttft.append(got["api"][0])
            local_tps.append(got["local"][1])
            api_tps.append(got["api"][1])
            ttft_diff.append(got["api"][0] - got["local"][0])
            tps_ratio.append(got["api"][1] / got["local"][1])
    return {"pairs": pairs, "local_ttft": statistics.median(local_ttft), "api_ttft": statistics.median(api_ttft),
            "ttft_diff": statistics.median(ttft_diff), "ttft_diff_p90": pct(ttft_diff, 0.9),
            "local_tps": statistics.median(local_tps), "api_tps": statistics.median(api_tps),
            "tps_ratio": statistics.median(tps_ratio)}


# ---- 2. concurrency --------------------------------------------------------------------------------
async def one_request(client, url: str, i: int, tokens: int, extra: dict) -> tuple[float, float | None, int]:
    body = {"model": "m", "messages": messages(i), "max_tokens": tokens, "temperature": 0, "stream": True, **extra}
    t0 = time.perf_counter()
    first = None
    n = 0
    async with client.stream("POST", url + "/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                n += 1
                first = first or time.perf_counter()
    return time.perf_counter() - t0, (first - t0) if first else None, n


async def load(url: str, clients: int, per_client: int, tokens: int, extra: dict) -> dict:
    import httpx

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients + 4)) as client:
        await one_request(client, url, -1, tokens, extra)  # warm-up
        counter = iter(range(clients * per_client))

        async def worker():
            out = []
            for i in counter:
                out.append(await one_request(client, url, i, tokens, extra))
            return out

        t0 = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker() for _ in range(clients))) for r in rs]
        wall = time.perf_counter() - t0
    return {"results": results, "wall": wall}


def summarise(rounds: list[dict]) -> dict:
    """Rounds pooled: requests over the summed wall time, latency percentiles over every request."""
    results = [r for rd in rounds for r in rd["results"]]
    wall = sum(rd["wall"] for rd in rounds)
    lat = [r[0] for r in results]
    ttft = [r[1] for r in results if r[1] is not None]
    return {"rps": len(results) / wall, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "ttft": pct(ttft, 0.5),
            "tps": sum(r[2] for r in results) / wall, "n": len(results)}


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=None, help="the GGUF to serve (default: the packaged SmolLM2)")
    parser.add_argument("--threads", type=int, default=1, help="threads of every model (in process and both servers)")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--pairs", type=int, default=20, help="paired in-process/API measurements")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--per-client", type=int, default=3, help="requests each concurrent client sends")
    parser.add_argument("--levels", default="1,4,16", help="numbers of concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="turns each server takes per level (alternating)")
    args = parser.parse_args()

    import edgekit
    from edgekit.packaged import smollm2_gguf_path

    gguf = args.gguf or smollm2_gguf_path()
    levels = [int(x) for x in args.levels.split(",")]
    ek_port, lc_port = free_port(), free_port()
    ek = start([sys.executable, "-m", "edgekit", "serve", str(gguf), "--port", str(ek_port), "--threads", str(args.threads),
                "--context", str(args.context), "--max-queue", str(max(levels) + 4), "--no-access-log",
                "--log-level", "warning"], f"http://127.0.0.1:{ek_port}/health", "edgekit-serve")
    lc = None
    try:
        lc = start([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "m", "--host",
                    "127.0.0.1", "--port", str(lc_port), "--n_ctx", str(args.context), "--n_threads", str(args.threads),
                    "--n_threads_batch", str(args.threads),
                    # by default a new request interrupts the one streaming (its answer is cut): queue them instead
                    "--interrupt_requests", "False"], f"http://127.0.0.1:{lc_port}/v1/models", "llama-cpp-server")
        ek_url, lc_url = f"http://127.0.0.1:{ek_port}/v1", f"http://127.0.0.1:{lc_port}/v1"
        print(f"# edgekit serve benchmark\n\n{gguf.name}, {args.threads} thread(s), context {args.context}, "
              f"{args.tokens} tokens per request, greedy; python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

        model = edgekit.load(gguf, threads=args.threads, context=args.context)
        o = overhead(model, ek_url, args.pairs, args.tokens)
        model.close()
        ttft_ok = "met" if o["ttft_diff"] * 1000 < 5 else "MISSED"
        tps_ok = "met" if o["tps_ratio"] >= 0.95 else "MISSED"
        print("\n## 1. edgekit serve vs the Model in process (paired, streamed)\n")
        print("| measure | in process | through the API | paired difference / ratio (median) | goal |")
        print("|---|---|---|---|---|")
        print(f"| time to first token, ms | {ms(o['local_ttft'])} | {ms(o['api_ttft'])} | +{ms(o['ttft_diff'])} ms "
              f"(p90 +{ms(o['ttft_diff_p90'])}) | < 5 ms: {ttft_ok} |")
        print(f"| tokens/s after the first | {o['local_tps']:.1f} | {o['api_tps']:.1f} | {o['tps_ratio']:.3f}x | "
              f">= 0.95x: {tps_ok} |")
        print(f"\n{o['pairs']} pairs, order flipped every pair.")

        # llama-cpp-python's server: the same sampling as edgekit's greedy (its defaults add top_k/min_p/repeat penalty)
        lc_extra = {"top_k": 1, "min_p": 0.0, "repeat_penalty": 1.0}
        print("\n## 2. Concurrent clients: edgekit serve vs llama-cpp-python's server (same GGUF, threads, context)\n")
        print("| clients | requests | edgekit req/s | llama-cpp req/s | ratio | edgekit p50 / p99 ms | llama-cpp p50 / p99 ms "
              "| edgekit TTFT p50 ms | llama-cpp TTFT p50 ms | edgekit tok/s | llama-cpp tok/s | goal >= 1.0x |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in levels:
            runs: dict[str, list] = {"ek": [], "lc": []}
            for r in range(args.rounds):  # the servers take turns, so that a change in the machine's load hits both
                for side in (("ek", "lc") if r % 2 == 0 else ("lc", "ek")):
                    url, extra = (ek_url, {}) if side == "ek" else (lc_url, lc_extra)
                    runs[side].append(asyncio.run(load(url, c, args.per_client, args.tokens, extra)))
            a, b = summarise(runs["ek"]), summarise(runs["lc"])
            ratio = a["rps"] / b["rps"]
            print(f"| {c} | {a['n']} | {a['rps']:.2f} | {b['rps']:.2f} | {ratio:.3f}x | {ms(a['p50'])} / {ms(a['p99'])} | "
                  f"{ms(b['p50'])} / {ms(b['p99'])} | {ms(a['ttft'])} | {ms(b['ttft'])} | {a['tps']:.1f} | {b['tps']:.1f} | "
                  f"{'met' if ratio >= 1.0 else 'MISSED'} |")
        print("\ntok/s here is text chunks received per second of wall time, all clients together.")
    finally:
        for proc in (ek, lc):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
