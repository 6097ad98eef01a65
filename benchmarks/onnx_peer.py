"""edgekit's ONNX decoder against onnxruntime-genai's model builder, side by side (issue 12's benchmark).

    .venv/bin/python benchmarks/onnx_peer.py [--runs 3] [--threads 2] [--prompt-tokens 257] [--gen-tokens 128]
        [--export-runs N] [--reuse] [--no-profile] [--quick] [--json PATH]

1. The Hugging Face folder: SmolLM2-135M-Instruct as the packaged GGUF makes it (``packaged:smollm2``,
   ``edgekit.packaged.smollm2_hf_folder``), read offline by both sides.
2. onnxruntime-genai's builder runs in its own virtual environment (it needs a newer transformers than
   optimum-onnx allows): ``$EDGEKIT_CACHE/onnx-peer-venv`` (default ~/.cache/edgekit), made on first use
   with torch (CPU; ``TORCH_INDEX`` picks another wheel index, as in dev.sh), transformers,
   onnxruntime-genai 0.18.0 and the onnxruntime this .venv has; rebuilt when PEER_REQUIREMENTS change.
3. Exports, each in a fresh process whose peak RSS the kernel reports (``wait4``): the builder's int4 and
   int8 (``-p int4|int8 -e cpu``), edgekit's ``export onnx --quant int4`` without the gate (``--no-gate``) and
   with it, int8 and fp32 (the fused path, ``--via auto``), and ``export gguf --quant q4_k_m``. The int4
   exports (builder / edgekit without gate / with gate) repeat ``--export-runs`` times in alternating order.
4. Speed: every artifact in a fresh process per run (onnxruntime-genai's own generator for its folders,
   ``edgekit.load`` for edgekit's), ``--runs`` rounds in alternating order, medians: prefill tok/s (prompt
   + first token), decode tok/s (the other new tokens), peak RSS. One more row runs genai's int4 graph in
   edgekit's loop, which separates the graph's share of a difference from the loop's.
5. Quality: the edgekit gate's KL mean / top-1 against the HF source, genai's folders included
   (benchmarks/onnx_peer_worker.py says how).
6. Profile (unless --no-profile): onnxruntime's profiler over one prefill and 16 decode steps of each int4
   graph, the same driver for both: time per op type per decode step.
Prints Markdown tables, the edgekit/genai ratios and PASS/MISS per goal of the issue; --json writes it all.
Artifacts and the export timings live in $EDGEKIT_CACHE/bench/onnx-peer (--reuse skips the exports there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # both sides read the local folder; nothing goes to the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from edgekit.fileio import cache_dir  # noqa: E402
from edgekit.manifest import model_info_from_folder  # noqa: E402
from edgekit.profiler.bench import LAUNCHER  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER = HERE / "onnx_peer_worker.py"
PEER_REQUIREMENTS = ["transformers==5.24.0", "onnxruntime-genai==0.18.0", "onnx", "onnx-ir", "safetensors", "tqdm",
                     "numpy"]
PEER_TORCH = "torch==2.13.0"
TEXT = (
    "Edge devices run small language models close to the data. They answer everyday requests quickly, "
    "privately and cheaply, while a larger model in the cloud handles the rest. "
) * 60
MB = 1e6


# ---------------------------------------------------------------- processes


def run_measured(cmd: list[str], log: Path, timeout: float = 1800) -> dict:
    """Run ``cmd`` through edgekit's bench launcher: wall seconds, peak RSS (wait4), its last stdout JSON line."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.NamedTemporaryFile("r", prefix="onnx-peer-rusage-", suffix=".json") as usage, \
            open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, usage.name, *cmd], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except BaseException:  # a timeout or Ctrl-C: the launcher and its run share their own process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        out.seek(0)
        lines = [ln for ln in out.read().splitlines() if ln.strip()]
        rusage = json.loads(usage.read() or "{}")
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")
    data = {}
    if lines:
        try:
            data = json.loads(lines[-1])
        except ValueError:
            pass
    return {"wall_s": wall, "peak_rss_mb": rusage.get("maxrss_kb", 0) * 1024 / MB, "out": data}


def worker(*args: str) -> list[str]:
    return [sys.executable, str(WORKER), *map(str, args)]


# ---------------------------------------------------------------- the peer's virtual environment


def peer_python() -> Path:
    """The peer venv's python, made (or remade when the requirements changed) on first use."""
    import onnxruntime

    reqs = [PEER_TORCH, *PEER_REQUIREMENTS, f"onnxruntime=={onnxruntime.__version__}"]
    venv = cache_dir() / "onnx-peer-venv"
    py = venv / "bin" / "python"
    stamp = venv / ".onnx-peer-requirements"
    key = hashlib.sha256(json.dumps([reqs, os.environ.get("TORCH_INDEX")]).encode()).hexdigest()[:16]
    if py.is_file() and stamp.is_file() and stamp.read_text() == key:
        return py
    print(f"setting up onnxruntime-genai's builder in {venv} (first time: about a minute) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    index = os.environ.get("TORCH_INDEX")
    log = venv / "pip.log"
    for cmd in ([*pip, PEER_TORCH, *(["--index-url", index] if index else [])], [*pip, *reqs[1:]]):
        with open(log, "a") as fh:
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"could not install the builder's environment ({' '.join(cmd[4:])}): see {log}")
    stamp.write_text(key)
    return py


def peer_versions(py: Path) -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
            "('torch', 'transformers', 'onnxruntime-genai', 'onnxruntime', 'onnx')}))")
    return json.loads(subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True).stdout)


# ---------------------------------------------------------------- exports


def model_bytes(path: Path) -> int:
    """Bytes of the model itself: model.onnx and its external data, or the .gguf file."""
    files = list(path.glob("*.gguf")) or [p for p in path.glob("model.onnx*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def parse_edgekit_log(text: str) -> dict:
    """Seconds of each step edgekit's export printed: ``STEP: WHAT: done (X s)`` / ``done (20/20, X s)``."""
    steps = {}
    for line in text.splitlines():
        name, sep, rest = line.rpartition(": done (")
        if not sep or not rest.rstrip().endswith(" s)"):
            continue
        try:
            seconds = float(rest.rstrip()[:-3].rsplit(" ", 1)[-1].lstrip("("))
        except ValueError:
            continue
        step, _, what = name.partition(": ")
        if step == "gate":  # "gate: reference model (transformers)", "gate: int4 artifact"
            step = "gate " + what.split(" (")[0].replace(" artifact", "")
        steps[step] = steps.get(step, 0.0) + seconds
    return steps


def build_genai(py: Path, hf: Path, out: Path, precision: str, logs: Path) -> dict:
    cache = out.parent / f".builder-cache-{precision}"
    for p in (out, cache):
        shutil.rmtree(p, ignore_errors=True)
    r = run_measured([str(py), "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                      "-p", precision, "-e", "cpu", "-c", str(cache)], logs / f"genai-{precision}.log")
    shutil.rmtree(cache, ignore_errors=True)
    return {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}


def export_edgekit(fmt: str, hf: Path, out: Path, quant: str, gate: bool, threads: int, logs: Path, tag: str) -> dict:
    cmd = [sys.executable, "-m", "edgekit", "export", fmt, str(hf), "-o", str(out), "--quant", quant, "--force",
           "--threads", str(threads), *([] if gate else ["--no-gate"])]
    log = logs / f"{tag}.log"
    r = run_measured(cmd, log)
    return {"wall_s": r["wall_s"], "peak_rss_mb": r["peak_rss_mb"], "steps": parse_edgekit_log(log.read_text())}


def run_exports(args, py: Path, hf: Path, work: Path) -> tuple[dict, dict]:
    """Make every artifact; time the int4 exports ``--export-runs`` times in alternating order."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    paths = {
        "genai int4": work / "genai-int4", "genai int8": work / "genai-int8",
        "edgekit int4": work / "edgekit-int4", "edgekit int8": work / "edgekit-int8",
        "edgekit fp32": work / "edgekit-fp32", "edgekit gguf q4_k_m": work / "edgekit-q4_k_m",
    }
    record = work / "exports.json"
    if args.reuse and record.is_file() and all(p.is_dir() and model_bytes(p) for p in paths.values()):
        print(f"reusing the artifacts and export timings in {work}", file=sys.stderr)
        return paths, {**json.loads(record.read_text()), "reused": True}
    nogate = work / "edgekit-int4-nogate"
    int4 = {
        "genai builder int4": lambda: build_genai(py, hf, paths["genai int4"], "int4", logs),
        "edgekit int4, no gate": lambda: export_edgekit("onnx", hf, nogate, "int4", False, args.threads, logs,
                                                        "edgekit-int4-nogate"),
        "edgekit int4, with gate": lambda: export_edgekit("onnx", hf, paths["edgekit int4"], "int4", True,
                                                          args.threads, logs, "edgekit-int4"),
    }
    runs: dict[str, list] = {k: [] for k in int4}
    for i in range(args.export_runs):
        for name in (list(int4) if i % 2 == 0 else list(int4)[::-1]):
            print(f"export {i + 1}/{args.export_runs}: {name} ...", file=sys.stderr)
            runs[name].append(int4[name]())
    timings = {name: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                      "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs), "runs": rs}
               for name, rs in runs.items()}
    shutil.rmtree(nogate, ignore_errors=True)
    once = {
        "genai builder int8": lambda: build_genai(py, hf, paths["genai int8"], "int8", logs),
        "edgekit int8, with gate": lambda: export_edgekit("onnx", hf, paths["edgekit int8"], "int8", True,
                                                          args.threads, logs, "edgekit-int8"),
        "edgekit fp32, with gate": lambda: export_edgekit("onnx", hf, paths["edgekit fp32"], "none", True,
                                                          args.threads, logs, "edgekit-fp32"),
        "edgekit gguf q4_k_m, with gate": lambda: export_edgekit("gguf", hf, paths["edgekit gguf q4_k_m"], "q4_k_m",
                                                                 True, args.threads, logs, "edgekit-q4_k_m"),
    }
    for name, fn in once.items():
        print(f"export: {name} ...", file=sys.stderr)
        r = fn()
        timings[name] = {**r, "runs": [r]}
    record.write_text(json.dumps(timings, indent=2))
    return paths, timings


# ---------------------------------------------------------------- speed, quality, profile


def run_speed(args, hf: Path, paths: dict, ids_file: Path, logs: Path) -> dict:
    rows = [("genai int4", "genai"), ("edgekit int4", "edgekit"), ("genai int8", "genai"), ("edgekit int8", "edgekit"),
            ("edgekit fp32", "edgekit"), ("edgekit gguf q4_k_m", "edgekit"),
            ("genai int4 graph, edgekit loop", "foreign")]
    where = {**paths, "genai int4 graph, edgekit loop": paths["genai int4"]}
    samples: dict[str, list] = {name: [] for name, _ in rows}
    for i in range(args.runs):
        for name, kind in (rows if i % 2 == 0 else rows[::-1]):
            cmd = worker(kind, where[name], ids_file, "--threads", args.threads, "--gen-tokens", args.gen_tokens,
                         "--hf", hf)
            r = run_measured(cmd, logs / "speed.log", timeout=900)
            samples[name].append({**r["out"], "peak_rss_mb": r["peak_rss_mb"]})
            print(f"run {i + 1}/{args.runs} {name}: decode {r['out']['decode_tps']:.1f} tok/s, prefill "
                  f"{r['out']['prefill_tps']:.1f} tok/s, {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    out = {}
    for name, rs in samples.items():
        out[name] = {k: statistics.median(r[k] for r in rs) for k in ("decode_tps", "prefill_tps", "peak_rss_mb")}
        out[name]["size_mb"] = model_bytes(where[name]) / MB
        out[name]["runs"] = rs
        if any(r.get("torch_loaded") for r in rs):
            out[name]["torch_loaded"] = True
    return out


def run_gates(args, hf: Path, paths: dict, logs: Path) -> dict:
    items = {"genai int4": ("genai", "int4"), "genai int8": ("genai", "int8"), "edgekit int4": ("edgekit", "int4"),
             "edgekit int8": ("edgekit", "int8"), "edgekit fp32": ("edgekit", "fp32"),
             "edgekit gguf q4_k_m": ("gguf", "q4_k_m")}
    specs = [f"{name}={kind}:{prec}:{paths[name]}" for name, (kind, prec) in items.items()]
    print("gate: the 20 prompts through the reference and every artifact ...", file=sys.stderr)
    r = run_measured(worker("gate", "--hf", hf, "--threads", args.threads, *specs), logs / "gate.log", timeout=3600)
    gates = r["out"]
    for name, (kind, _) in items.items():  # edgekit's artifacts recorded their gate at export: the same numbers
        if kind != "genai":
            recorded = json.loads((paths[name] / "edgekit.json").read_text()).get("gate", {}).get("metrics") or {}
            here = gates[name]["kl_mean"]
            if recorded and abs(recorded.get("kl_mean", 0) - here) > 1e-3 * max(1e-6, recorded["kl_mean"]) + 1e-7:
                print(f"note: {name} gate KL {here:.6g} here, {recorded['kl_mean']:.6g} at export",
                      file=sys.stderr)
    return gates


def graph_ops(path: Path) -> dict:
    import onnx

    from collections import Counter

    m = onnx.load(str(path / "model.onnx"), load_external_data=False)
    return {"nodes": len(m.graph.node), "ops": dict(Counter(n.op_type for n in m.graph.node).most_common())}


def run_profiles(args, paths: dict, ids_file: Path, info, work: Path) -> dict:
    out = {}
    shutil.rmtree(work / "profiles", ignore_errors=True)
    for name in ("genai int4", "edgekit int4"):
        r = run_measured(worker("profile", paths[name] / "model.onnx", ids_file, "--out", work / "profiles" /
                                name.replace(" ", "-"), "--steps", args.profile_steps, "--threads", args.threads,
                                "--kv-heads", info.n_kv_heads, "--head-dim", info.head_dim),
                         work / "logs" / "profile.log", timeout=900)
        out[name] = {**r["out"], "graph": graph_ops(paths[name])}
    return out


# ---------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def report(res: dict, args) -> list[dict]:
    s, g, e, info = res["speed"], res["gate"], res["exports"], res["model"]
    print(f"\nedgekit vs onnxruntime-genai {res['versions']['peer'].get('onnxruntime-genai')}: SmolLM2-135M-Instruct, "
          f"{args.threads} threads, {args.prompt_tokens}-token prompt, {args.gen_tokens} new tokens, median of "
          f"{args.runs} fresh-process runs in alternating order\n")
    print("| artifact | size MB | decode tok/s | prefill tok/s | peak RSS MB | gate KL mean / top-1 |")
    print("|---|---|---|---|---|---|")
    for name, r in s.items():
        q = g.get(name)
        gate_s = f"{q['kl_mean']:.4g} / {q['top1']:.3f}" if q else "(genai int4's graph)"
        print(f"| {name} | {r['size_mb']:.1f} | {r['decode_tps']:.1f} | {r['prefill_tps']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {gate_s} |")
    print("\n| export | wall s | peak RSS MB | steps (s) |\n|---|---|---|---|")
    for name, r in e.items():
        if isinstance(r, dict):
            steps = "; ".join(f"{k} {v:.1f}" for k, v in (r.get("steps") or r["runs"][0].get("steps") or {}).items())
            print(f"| {name} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {steps or '-'} |")
    if e.get("reused"):
        print("(export timings reused from an earlier run: --reuse)")
    rat = {}
    for q in ("int4", "int8"):
        a, b = s[f"edgekit {q}"], s[f"genai {q}"]
        rat[q] = {k: ratio(a[k], b[k]) for k in ("decode_tps", "prefill_tps", "size_mb", "peak_rss_mb")}
    eb, en, eg = e["genai builder int4"], e["edgekit int4, no gate"], e["edgekit int4, with gate"]
    rat["export"] = {"wall_no_gate": ratio(en["wall_s"], eb["wall_s"]),
                     "wall_with_gate": ratio(eg["wall_s"], eb["wall_s"]),
                     "rss_no_gate": ratio(en["peak_rss_mb"], eb["peak_rss_mb"]),
                     "rss_with_gate": ratio(eg["peak_rss_mb"], eb["peak_rss_mb"])}
    loop = s["genai int4 graph, edgekit loop"]
    rat["loop"] = {k: ratio(loop[k], s["genai int4"][k]) for k in ("decode_tps", "prefill_tps")}
    print("\n| ratio edgekit / genai | int4 | int8 |\n|---|---|---|")
    for k, label in (("decode_tps", "decode tok/s"), ("prefill_tps", "prefill tok/s"), ("size_mb", "size"),
                     ("peak_rss_mb", "peak RSS")):
        print(f"| {label} | {fmt(rat['int4'][k])} | {fmt(rat['int8'][k])} |")
    x = rat["export"]
    print(f"| int4 export wall time, gate apart / with gate | {fmt(x['wall_no_gate'])} / "
          f"{fmt(x['wall_with_gate'])} | - |")
    print(f"| int4 export peak RSS, gate apart / with gate | {fmt(x['rss_no_gate'])} / {fmt(x['rss_with_gate'])} | - |")
    print(f"| genai's int4 graph in edgekit's loop vs in genai's: decode / prefill | "
          f"{fmt(rat['loop']['decode_tps'])} / {fmt(rat['loop']['prefill_tps'])} | - |")
    res["ratios"] = rat

    positions = args.prompt_tokens + args.gen_tokens
    kv_mb = info["n_layers"] * 2 * info["n_kv_heads"] * info["head_dim"] * 4 * positions / MB
    q4 = s["edgekit gguf q4_k_m"]["size_mb"]
    goals = [
        ("edgekit int4 decode >= 1.0x genai int4", rat["int4"]["decode_tps"], ">=", 1.0),
        ("edgekit int4 prefill >= 1.0x genai int4", rat["int4"]["prefill_tps"], ">=", 1.0),
        ("edgekit int8 decode >= 1.0x genai int8", rat["int8"]["decode_tps"], ">=", 1.0),
        ("edgekit int8 prefill >= 1.0x genai int8", rat["int8"]["prefill_tps"], ">=", 1.0),
        ("edgekit int4 gate KL mean <= 0.12", g["edgekit int4"]["kl_mean"], "<=", 0.12),
        ("edgekit int4 gate top-1 >= 0.83", g["edgekit int4"]["top1"], ">=", 0.83),
        ("edgekit int4 size <= 1.15x q4_k_m GGUF", ratio(s["edgekit int4"]["size_mb"], q4), "<=", 1.15),
    ]
    for name in ("edgekit int4", "edgekit int8", "edgekit fp32"):
        r = s[name]
        goals.append((f"{name} peak RSS <= 1.3x (weights + KV cache {kv_mb:.0f} MB)",
                      ratio(r["peak_rss_mb"], r["size_mb"] + kv_mb), "<=", 1.3))
    goals += [("edgekit int4 export (gate apart) wall time <= 1.0x builder", x["wall_no_gate"], "<=", 1.0),
              ("edgekit int4 export (gate apart) peak RSS <= 1.0x builder", x["rss_no_gate"], "<=", 1.0)]
    print("\ngoals (issue 12):")
    out = []
    for label, value, op, bound in goals:
        ok = value is not None and (value >= bound if op == ">=" else value <= bound)
        print(f"  {'PASS' if ok else 'MISS'}  {label}: {fmt(value, '.3g')}")
        out.append({"goal": label, "value": value, "bound": f"{op} {bound}", "pass": ok})

    if res.get("profile"):
        print(f"\nonnxruntime profile, per decode step (median of {args.profile_steps} steps after a "
              f"{args.prompt_tokens}-token prefill, after a warm-up sequence; microseconds; the same driver for "
              "both graphs):")
        pg, pe = res["profile"]["genai int4"], res["profile"]["edgekit int4"]
        ops = sorted(set(pg["decode_us_per_op"]) | set(pe["decode_us_per_op"]),
                     key=lambda o: -max(pg["decode_us_per_op"].get(o, 0), pe["decode_us_per_op"].get(o, 0)))
        print("| op type | genai int4 us | edgekit int4 us |\n|---|---|---|")
        for op in ops[:12]:
            print(f"| {op} | {pg['decode_us_per_op'].get(op, 0):.0f} | {pe['decode_us_per_op'].get(op, 0):.0f} |")
        print(f"| kernels (sum of the medians) / whole run (median) | {pg['decode_kernel_us']:.0f} / "
              f"{pg['decode_run_us']:.0f} | {pe['decode_kernel_us']:.0f} / {pe['decode_run_us']:.0f} |")
        print(f"| prefill run | {pg['prefill_run_us']:.0f} | {pe['prefill_run_us']:.0f} |")
        print(f"graph nodes: genai {pg['graph']['nodes']} {pg['graph']['ops']}\n"
              f"             edgekit {pe['graph']['nodes']} {pe['graph']['ops']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--export-runs", type=int, help="repeats of the timed int4 exports (default: --runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=257)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--profile-steps", type=int, default=16)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse the artifacts and export timings of an earlier run")
    ap.add_argument("--quick", action="store_true", help="smoke check: 1 run, 64-token prompt, 16 new tokens")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.prompt_tokens, args.gen_tokens, args.profile_steps = 1, 64, 16, 4
    args.export_runs = args.export_runs or args.runs

    from tokenizers import Tokenizer

    from edgekit.packaged import smollm2_hf_folder

    hf = smollm2_hf_folder()
    py = peer_python()
    work = cache_dir() / "bench" / "onnx-peer"
    work.mkdir(parents=True, exist_ok=True)
    paths, exports = run_exports(args, py, hf, work)
    ids = Tokenizer.from_file(str(hf / "tokenizer.json")).encode(TEXT).ids[: args.prompt_tokens]
    assert len(ids) == args.prompt_tokens, f"the text has only {len(ids)} tokens"
    ids_file = work / "prompt_ids.json"
    ids_file.write_text(json.dumps(ids))
    import edgekit
    import onnxruntime

    info = model_info_from_folder(hf, "text-generation")
    res = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": {"hf_folder": str(hf), "n_layers": info.n_layers, "n_kv_heads": info.n_kv_heads,
                  "head_dim": info.head_dim},
        "versions": {"peer": peer_versions(py), "edgekit": edgekit.__version__, "onnxruntime": onnxruntime.__version__},
        "exports": exports,
        "speed": run_speed(args, hf, paths, ids_file, work / "logs"),
        "gate": run_gates(args, hf, paths, work / "logs"),
    }
    if not args.no_profile:
        res["profile"] = run_profiles(args, paths, ids_file, info, work)
    res["goals"] = report(res, args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
