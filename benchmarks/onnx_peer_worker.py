"""One measurement of benchmarks/onnx_peer.py in its own fresh process (the main .venv). Last stdout line: JSON.

    python benchmarks/onnx_peer_worker.py genai   FOLDER IDS.json --threads 2 --gen-tokens 128
    python benchmarks/onnx_peer_worker.py edgekit ARTIFACT IDS.json --threads 2 --gen-tokens 128
    python benchmarks/onnx_peer_worker.py foreign GENAI_FOLDER IDS.json --hf HF_FOLDER ...  (genai graph, edgekit loop)
    python benchmarks/onnx_peer_worker.py gate    --hf HF_FOLDER --threads 2 NAME=KIND:PRECISION:PATH ...
    python benchmarks/onnx_peer_worker.py profile MODEL.onnx IDS.json --out TRACE_DIR --steps 16 --threads 2

Speed runs (genai, edgekit, foreign) have one shape: a warm-up generation of 4 new tokens on the same prompt,
then the timed one; prefill = the prompt and the first token (onnxruntime-genai: ``append_tokens`` + the first
``generate_next_token``; edgekit: ``Timings.ttft_s``), decode = the remaining ``gen_tokens - 1`` tokens,
greedy, end-of-sequence ignored, the KV buffer sized to prompt + new tokens on every side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

WARMUP_TOKENS = 4
WARMUP_STEPS = 2  # the profile's warm-up: a prefill and this many decode steps


def _ids(path: str) -> list[int]:
    return [int(i) for i in json.loads(Path(path).read_text())]


def _out(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# ---------------------------------------------------------------- onnxruntime-genai


def run_genai(a) -> dict:
    import onnxruntime_genai as og

    ids = _ids(a.ids)
    t0 = time.perf_counter()
    cfg = og.Config(a.path)
    # the thread count as a genai user sets it: the decoder's session options in genai_config.json
    cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": a.threads, "inter_op_num_threads": 1}}}}))
    model = og.Model(cfg)
    load_s = time.perf_counter() - t0
    total = len(ids) + a.gen_tokens

    def once(n_new: int):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n_new, min_length=len(ids) + n_new, do_sample=False,
                                  top_k=1)
        gen = og.Generator(model, params)
        t = time.perf_counter()
        gen.append_tokens(ids)
        gen.generate_next_token()
        t1 = time.perf_counter()
        n = 1
        while n < n_new:
            gen.generate_next_token()
            n += 1
        t2 = time.perf_counter()
        seq = list(gen.get_sequence(0))
        del gen
        return t1 - t, t2 - t1, n - 1, seq[len(ids):]

    once(WARMUP_TOKENS)
    prefill_s, decode_s, n_dec, new = once(a.gen_tokens)
    assert len(new) == a.gen_tokens and total == len(ids) + len(new), (len(new), a.gen_tokens)
    return {"prefill_s": prefill_s, "decode_s": decode_s, "decode_tokens": n_dec, "prompt_tokens": len(ids),
            "prefill_tps": len(ids) / prefill_s, "decode_tps": n_dec / decode_s, "load_s": load_s,
            "first_tokens": [int(t) for t in new[:8]]}


# ---------------------------------------------------------------- edgekit's runtime


def open_foreign(folder: str | Path, hf: str | Path, threads: int | None, context: int | None = None):
    """onnxruntime-genai's decoder folder, run by edgekit's ONNX runtime (:class:`OnnxDecoder`).

    The builder's graph has the same inputs and outputs as edgekit's fused graph (input_ids, attention_mask,
    past_key_values.N.key/value -> logits, present.N.key/value) and the same discipline: GroupQueryAttention
    over one KV buffer per layer shared by past and present, sequence lengths from the attention mask. Only the
    ``edgekit.graph`` metadata that makes the runtime pick its shared-buffer cache is missing, so this opens
    the folder with the model facts of the HF source and switches the cache to the shared buffer.
    """
    from edgekit.manifest import model_info_from_folder
    import numpy as np

    from edgekit.runtimes.onnx import _ORT_TYPES, OnnxDecoder, _ort
    from edgekit.runtimes.onnx_kv import SharedBuffer

    class ForeignFusedDecoder(OnnxDecoder):
        def _setup(self) -> None:
            super()._setup()
            first = {i.name: i for i in self.session.get_inputs()}[self.past_names[0]]
            kv = first.shape[1] if isinstance(first.shape[1], int) else self.info.n_kv_heads
            hd = first.shape[3] if isinstance(first.shape[3], int) else self.info.head_dim
            presents = [n.replace("past_key_values.", "present.", 1) for n in self.past_names]
            self.fused = True
            self._cache = SharedBuffer(_ort(), self.past_names, presents, (1, kv, 0, hd),
                                       _ORT_TYPES.get(first.type, np.float32))

    info = model_info_from_folder(Path(hf), "text-generation")
    model = ForeignFusedDecoder(Path(folder), "model.onnx", info, threads=threads)
    if context:
        model.context_length = min(context, model.context_length)
    return model


def _timed_generate(model, ids: list[int], gen_tokens: int) -> dict:
    model.generate_ids(ids, max_tokens=WARMUP_TOKENS, ignore_eos=True)
    r = model.generate_ids(ids, max_tokens=gen_tokens, ignore_eos=True)
    t = r.timings
    assert len(r.token_ids) == gen_tokens and t.decode_tokens == gen_tokens - 1, (len(r.token_ids), t.decode_tokens)
    return {"prefill_s": t.ttft_s, "decode_s": t.decode_s, "decode_tokens": t.decode_tokens,
            "prompt_tokens": len(ids), "prefill_tps": len(ids) / t.ttft_s, "decode_tps": t.decode_tps,
            "load_s": t.load_s, "first_tokens": list(r.token_ids[:8])}


def run_edgekit(a) -> dict:
    import edgekit

    ids = _ids(a.ids)
    t0 = time.perf_counter()
    model = edgekit.load(a.path, threads=a.threads, context=len(ids) + a.gen_tokens)
    load_s = time.perf_counter() - t0
    out = _timed_generate(model, ids, a.gen_tokens)
    out["load_s"] = load_s
    out["torch_loaded"] = "torch" in sys.modules
    return out


def run_foreign(a) -> dict:
    ids = _ids(a.ids)
    t0 = time.perf_counter()
    model = open_foreign(a.path, a.hf, a.threads, context=len(ids) + a.gen_tokens)
    load_s = time.perf_counter() - t0
    out = _timed_generate(model, ids, a.gen_tokens)
    out["load_s"] = load_s
    return out


# ---------------------------------------------------------------- the quality gate


def run_gate(a) -> dict:
    """The gate's metrics for each artifact against the HF source, on the gate's 20 built-in prompts.

    ONNX artifacts (edgekit's and onnxruntime-genai's) share one reference, computed on the token ids of the
    source's tokenizer, exactly as ``gate_onnx`` does with the artifact's copy of it; edgekit's ONNX artifacts
    load through ``edgekit.load`` (what ``gate_onnx`` runs), genai's through :func:`open_foreign`. GGUF
    artifacts go through ``edgekit.gate_artifact`` (llama.cpp tokenizes, so they need their own reference).
    """
    import edgekit
    from edgekit.quality import compute_reference, gate, load_prompts, thresholds_for
    from edgekit.runtimes.tokenizer import HFTokenizer

    prompts = load_prompts(None)
    items = []
    for spec in a.items:
        name, _, rest = spec.partition("=")
        kind, precision, path = rest.split(":", 2)
        items.append((name, kind, precision, path))
    out: dict = {}
    reference = None
    for name, kind, precision, path in items:
        t0 = time.perf_counter()
        limits = thresholds_for("decoder", precision)
        if kind == "gguf":
            report = edgekit.gate_artifact(path, a.hf, threads=a.threads)
        else:
            if reference is None:
                reference = compute_reference("decoder", Path(a.hf), prompts, HFTokenizer(Path(a.hf)))
            model = open_foreign(path, a.hf, a.threads) if kind == "genai" else edgekit.load(path, threads=a.threads)
            with model:
                report = gate(model, reference, precision, limits)
        out[name] = {**report.metrics, "status": report.status, "bounds": report.thresholds,
                     "seconds": time.perf_counter() - t0}
        print(f"gate {name}: {report.metrics}", file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------- onnxruntime's profiler


def run_profile(a) -> dict:
    """Prefill the prompt, then ``--steps`` decode steps, with onnxruntime's profiler on; time per op type.

    The same driver for both graphs: one KV buffer per layer bound as past and present (both builders' graphs
    share it), the attention mask as long as the positions in use.
    """
    import numpy as np
    import onnxruntime as ort

    ids = _ids(a.ids)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(out_dir / "ort")
    sess = ort.InferenceSession(a.path, opts, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in sess.get_inputs()}
    past = [n for n in inputs if n.startswith("past_key_values.")]
    first = inputs[past[0]]
    cap = len(ids) + a.steps + 1
    kv = first.shape[1] if isinstance(first.shape[1], int) else a.kv_heads
    hd = first.shape[3] if isinstance(first.shape[3], int) else a.head_dim
    bufs = {n: ort.OrtValue.ortvalue_from_numpy(np.zeros((1, kv, cap, hd), np.float32)) for n in past}
    binding = sess.io_binding()

    def sequence(steps: int) -> None:
        n_past, token = 0, None
        for step in range(steps + 1):
            new = ids if step == 0 else [token]
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            binding.bind_cpu_input("input_ids", np.asarray([new], np.int64))
            binding.bind_cpu_input("attention_mask", np.ones((1, n_past + len(new)), np.int64))
            if "position_ids" in inputs:
                binding.bind_cpu_input("position_ids", np.arange(n_past, n_past + len(new), dtype=np.int64)[None])
            for n in past:
                binding.bind_ortvalue_input(n, bufs[n])
                binding.bind_ortvalue_output(n.replace("past_key_values.", "present.", 1), bufs[n])
            binding.bind_output("logits", "cpu")
            sess.run_with_iobinding(binding)
            token = int(binding.get_outputs()[0].numpy()[0, -1].argmax())
            n_past += len(new)

    sequence(WARMUP_STEPS)  # first-call allocations and caches, left out of the summary
    sequence(a.steps)
    trace = sess.end_profiling()
    return {"trace": trace, **summarize_trace(trace, a.path)}


def summarize_trace(trace: str, model_path: str) -> dict:
    """Per op type: microseconds in the (warm) prefill run and per decode step.

    Per decode step, each op type's median over the steps: on a shared machine a preempted thread's wait is
    charged to whichever kernel was running, and the median keeps such a step out.
    """
    events = json.loads(Path(trace).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")[WARMUP_STEPS + 1:]
    nodes = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    per_run: list[dict[str, float]] = [{} for _ in runs]
    counts: list[dict[str, int]] = [{} for _ in runs]
    for e in nodes:
        op = e.get("args", {}).get("op_name", "?")
        for i, (start, end) in enumerate(runs):
            if start <= e["ts"] <= end:
                per_run[i][op] = per_run[i].get(op, 0.0) + e["dur"]
                counts[i][op] = counts[i].get(op, 0) + 1
                break
    if not runs:
        return {"model": model_path, "decode_steps": 0}
    decode = per_run[1:]  # run 0 is the prefill
    ops = sorted({op for r in decode for op in r})
    per_step = {op: statistics.median(r.get(op, 0.0) for r in decode) for op in ops}
    return {
        "model": model_path,
        "decode_steps": len(decode),
        "decode_run_us": statistics.median(e - s for s, e in runs[1:]),
        "decode_kernel_us": sum(per_step.values()),  # the sum of the per-op medians
        "decode_us_per_op": dict(sorted(per_step.items(), key=lambda kv: -kv[1])),
        "decode_nodes_per_op": counts[1] if len(counts) > 1 else {},
        "prefill_run_us": runs[0][1] - runs[0][0],
        "prefill_us_per_op": dict(sorted(per_run[0].items(), key=lambda kv: -kv[1])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("genai", "edgekit", "foreign"):
        p = sub.add_parser(name)
        p.add_argument("path")
        p.add_argument("ids")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--gen-tokens", type=int, default=128)
        p.add_argument("--hf")
    p = sub.add_parser("gate")
    p.add_argument("--hf", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("items", nargs="+")
    p = sub.add_parser("profile")
    p.add_argument("path")
    p.add_argument("ids")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--kv-heads", type=int, required=True)
    p.add_argument("--head-dim", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    fn = {"genai": run_genai, "edgekit": run_edgekit, "foreign": run_foreign, "gate": run_gate,
          "profile": run_profile}[a.cmd]
    _out(fn(a))


if __name__ == "__main__":
    main()
