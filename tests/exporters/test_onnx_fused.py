"""The fused ONNX decoder path (edgekit/exporters/onnx_fused) and the runtime's shared KV buffer.

Differential tests against transformers: logits of a prefill and 12 cached steps, and
32 greedy tokens, on tiny random models of each covered family and on SmolLM2.
The SmolLM2 artifacts come from the session's ArtifactStore ("smollm2-fused-*": export_onnx's
default path for llama decoders).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.exporters.onnx import export_onnx
from edgekit.exporters.onnx_fused import nbits
from edgekit.exporters.onnx_fused.build import GRAPH_KIND

STEPS = 12


def _transformers_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _transformers_greedy(folder: Path, ids: list[int], n: int) -> list[int]:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    out, past, feed = [], None, torch.tensor([ids])
    with torch.no_grad():  # plain argmax with the cache, end-of-sequence included (edgekit runs with ignore_eos)
        for _ in range(n):
            res = model(feed, past_key_values=past, use_cache=True)
            past = res.past_key_values
            out.append(int(res.logits[0, -1].argmax()))
            feed = torch.tensor([[out[-1]]])
    return out


@pytest.fixture(scope="session")
def tiny_fused(tiny_llama, tiny_qwen2, tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    return {name: export_onnx(src, root / name) for name, src in (("llama", tiny_llama), ("qwen2", tiny_qwen2))}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_fp32_logits_match_transformers_over_cached_steps(arch, tiny_fused, tiny_llama, tiny_qwen2):
    art = tiny_fused[arch]
    src = {"llama": tiny_llama, "qwen2": tiny_qwen2}[arch]
    assert GRAPH_KIND in art.manifest.graph_rewrites
    assert "onnxruntime-genai" in art.manifest.runtimes
    prompt = list(np.random.RandomState(1).randint(3, 400, size=9))
    steps = list(np.random.RandomState(2).randint(3, 400, size=STEPS))
    ref = _transformers_logits(src, prompt + steps)
    with edgekit.load(art.path) as model:
        assert model.fused
        model._reset()
        out = [model.forward(prompt)] + [model.forward([t]) for t in steps]
        seq = model.sequence_logits(prompt + steps)
    got = np.stack(out)
    want = ref[len(prompt) - 1:]
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(seq - ref).max() < 1e-4


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_fused_greedy_tokens_equal_transformers(arch, tiny_fused, tiny_llama, tiny_qwen2):
    src = {"llama": tiny_llama, "qwen2": tiny_qwen2}[arch]
    with edgekit.load(tiny_fused[arch].path) as model:
        ids = model.tokenize("The capital of France is")
        got = [e.token_id for e in model.stream_ids(ids, max_tokens=32, ignore_eos=True)]
    assert got == _transformers_greedy(src, ids, 32)


def test_fused_graph_is_small_and_uses_fused_ops(tiny_fused):
    import onnx

    art = tiny_fused["llama"]
    model = onnx.load(str(art.path / "model.onnx"), load_external_data=False)
    ops = [n.op_type for n in model.graph.node]
    n_layers = art.manifest.model.n_layers
    assert ops.count("GroupQueryAttention") == n_layers
    assert ops.count("SkipSimplifiedLayerNormalization") == 2 * n_layers
    assert "Concat" not in ops and "Constant" not in ops
    assert len(ops) <= 12 * n_layers + 12
    assert json.loads((art.path / "genai_config.json").read_text())["search"]["past_present_share_buffer"] is True


def test_fused_smollm2_greedy_tokens_equal_transformers(onnx_artifact, smollm2_hf):
    art = onnx_artifact("smollm2-fused-fp32")
    assert GRAPH_KIND in art.manifest.graph_rewrites
    with edgekit.load(art.path, threads=2) as model:
        ids = model.tokenize("The capital of France is")
        got = [e.token_id for e in model.stream_ids(ids, max_tokens=32, ignore_eos=True)]
    assert got == _transformers_greedy(smollm2_hf, ids, 32)


def test_fused_context_buffer_overflow_is_a_context_error(tiny_fused):
    from edgekit.errors import ContextOverflowError

    with edgekit.load(tiny_fused["llama"].path, context=16) as model:
        model.forward(list(range(3, 15)))
        with pytest.raises(ContextOverflowError):
            model.forward(list(range(3, 9)))


def test_int4_default_passes_gate_and_a_zeroed_matrix_fails_it(onnx_artifact, smollm2_hf, tmp_path):
    import shutil

    import onnx

    from edgekit.exporters import gate_artifact
    from edgekit.manifest import list_files, write_manifest

    art = onnx_artifact("smollm2-fused-int4")  # the export gated it: it passed with the int4 bounds
    assert art.manifest.gate.status == "passed" and GRAPH_KIND in art.manifest.graph_rewrites
    broken = tmp_path / "broken"
    shutil.copytree(art.path, broken)
    model = onnx.load(str(broken / "model.onnx"), load_external_data=False)
    target = next(t for t in model.graph.initializer if t.name == "blk.4.ffn_down.scales")
    entries = {e.key: e.value for e in target.external_data}
    with open(broken / entries["location"], "r+b") as fh:  # zero scales: the whole matrix reads as 0
        fh.seek(int(entries["offset"]))
        fh.write(b"\0" * int(entries["length"]))
    write_manifest(broken, art.manifest.model_copy(update={"files": list_files(broken)}))
    report = gate_artifact(broken, smollm2_hf)
    assert report.status == "failed", report.metrics


def test_nbits_roundtrip_error_is_small():
    rng = np.random.RandomState(0)
    w = rng.normal(size=(48, 96)).astype(np.float32)
    for bits, tol in ((8, 0.02), (4, 0.3)):
        for method in ("rtn", "search"):
            q = nbits.quantize(w, bits, 32, method)
            err = np.abs(nbits.dequantize(q) - w).max()
            assert err < tol * np.abs(w).max(), (bits, method, err)
    zero = nbits.quantize(np.zeros((4, 32), np.float32), 4, 32)
    assert not nbits.dequantize(zero).any()


def test_fused_runtime_imports_no_torch(tiny_fused):
    code = (
        "import sys, edgekit\n"
        f"m = edgekit.load({str(tiny_fused['llama'].path)!r})\n"
        "m.generate('hello', max_tokens=4)\n"
        "bad = [k for k in ('torch', 'transformers', 'optimum') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_onnxruntime_genai_loads_the_artifact_and_agrees(tiny_fused):
    import onnxruntime_genai as og  # installed by ./dev.sh setup (a missing one is a setup failure)
    art = tiny_fused["llama"]
    model = og.Model(str(art.path))
    with edgekit.load(art.path) as ek:
        ids = ek.tokenize("The capital of France is")
        want = [e.token_id for e in ek.stream_ids(ids, max_tokens=24, ignore_eos=True)]
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + 24)
    gen = og.Generator(model, params)
    gen.append_tokens(np.asarray(ids, dtype=np.int32))
    got = []
    while not gen.is_done() and len(got) < 24:
        gen.generate_next_token()
        got.append(int(gen.get_next_tokens()[0]))
    assert got == want
