"""The fused ONNX decoder path (edgekit/exporters/onnx_fused) and the runtime's shared KV buffer.

Differential tests against transformers: logits of a prefill and 12 cached steps, and
32 greedy tokens, on tiny random models of each covered family (tests.exporters.gguf.models:
the Gemma 3 one has a sliding window of 8, shorter than the sequences) and on SmolLM2.
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
from edgekit.errors import UnsupportedModelError
from edgekit.exporters.onnx_fused import covered_model_types, covers, nbits
from edgekit.exporters.onnx_fused.build import GRAPH_KIND
from edgekit.exporters.onnx_fused.specs import fused_spec_for

STEPS = 12
# every family the fused builder covers, each with a tiny random model (llama and qwen2: tests/conftest.py)
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gemma3_text"]
# Gemma 3 settings llama.cpp cannot run but the fused graph can: query_pre_attn_scalar != head_dim, final logit
# softcapping, and layer types without a period
GEMMA3_VARIANT = {"query_pre_attn_scalar": 20, "final_logit_softcapping": 3.0,
                  "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}


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


class TinySources:
    """``tiny_src["qwen3"]`` -> the tiny model folder of a family (or of the Gemma 3 variant, "gemma3_text+")."""

    def __init__(self, tiny_llama, tiny_qwen2, tiny_arch, root: Path):
        self.fixed = {"llama": tiny_llama, "qwen2": tiny_qwen2}
        self.tiny_arch, self.root = tiny_arch, root

    def __getitem__(self, arch: str) -> Path:
        if arch in self.fixed:
            return self.fixed[arch]
        if arch == "gemma3_text+":
            import shutil

            folder = self.root / "gemma3-variant"
            if not folder.exists():
                shutil.copytree(self.tiny_arch("gemma3_text"), folder)
                config = json.loads((folder / "config.json").read_text())
                (folder / "config.json").write_text(json.dumps({**config, **GEMMA3_VARIANT}))
            return folder
        return self.tiny_arch(arch)


class FusedStore:
    """``tiny_fused["gemma"]`` -> the fp32 fused artifact of that family's tiny model, exported (and gated) once."""

    def __init__(self, sources: TinySources, root: Path):
        self.sources, self.root, self.done = sources, root, {}

    def __getitem__(self, arch: str):
        if arch not in self.done:
            self.done[arch] = export_onnx(self.sources[arch], self.root / arch.replace("+", "-variant"))
        return self.done[arch]


@pytest.fixture(scope="session")
def tiny_src(tiny_llama, tiny_qwen2, tiny_arch, tmp_path_factory) -> TinySources:
    return TinySources(tiny_llama, tiny_qwen2, tiny_arch, tmp_path_factory.mktemp("fused-src"))


@pytest.fixture(scope="session")
def tiny_fused(tiny_src, tmp_path_factory) -> FusedStore:
    return FusedStore(tiny_src, tmp_path_factory.mktemp("fused"))


def test_every_covered_family_has_a_tiny_model():
    assert sorted(FAMILIES) == covered_model_types()


@pytest.mark.parametrize("arch", FAMILIES + ["gemma3_text+"])
def test_fused_fp32_logits_match_transformers_over_cached_steps(arch, tiny_fused, tiny_src):
    art = tiny_fused[arch]
    src = tiny_src[arch]
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
    # measured: at most 3e-6 on every family (logits of magnitude 2 to 5)
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(seq - ref).max() < 1e-4


@pytest.mark.parametrize("arch", FAMILIES)
def test_fused_greedy_tokens_equal_transformers(arch, tiny_fused, tiny_src):
    src = tiny_src[arch]
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


def test_gemma3_graph_has_per_layer_windows_rope_tables_and_norms(tiny_fused):
    import onnx
    from onnx import helper

    art = tiny_fused["gemma3_text"]
    model = onnx.load(str(art.path / "model.onnx"), load_external_data=False)
    gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in gqa]
    assert [a["local_window_size"] for a in attrs] == [8, 8, -1]  # layer_types: sliding, sliding, full
    local, full = ("rope_local.cos", "rope_local.sin"), ("rope.cos", "rope.sin")
    assert [(n.input[7], n.input[8]) for n in gqa] == [local, local, full]
    assert all(n.input[1] and n.input[2] for n in gqa)  # q, k and v apart: the q/k norms sit between
    assert abs(attrs[0]["scale"] - 32 ** -0.5) < 1e-7  # query_pre_attn_scalar (a float32 attribute)
    names = {n.name for n in model.graph.node}
    assert {"blk.0.attn_q_norm", "blk.0.attn_k_norm", "blk.0.post_attention_norm", "blk.0.post_ffw_norm"} <= names
    assert json.loads((art.path / "genai_config.json").read_text())["model"]["type"] == "gemma3_text"


def test_fused_builder_refuses_what_it_does_not_cover(tiny_src, tmp_path):
    import shutil

    config = json.loads((tiny_src["phi3"] / "config.json").read_text())
    longrope = {**config, "rope_scaling": {"type": "longrope", "short_factor": [1.0] * 16, "long_factor": [1.0] * 16}}
    assert covers(config) and not covers(longrope)
    src = tmp_path / "phi3-longrope"
    shutil.copytree(tiny_src["phi3"], src)
    (src / "config.json").write_text(json.dumps(longrope))
    with pytest.raises(UnsupportedModelError, match="rope_scaling type 'longrope'"):  # via="fused" says why
        export_onnx(src, tmp_path / "out", via="fused")
    gemma3 = json.loads((tiny_src["gemma3_text"] / "config.json").read_text())
    with pytest.raises(UnsupportedModelError, match="attn_logit_softcapping"):
        fused_spec_for({**gemma3, "attn_logit_softcapping": 50.0})
    with pytest.raises(UnsupportedModelError, match="relu"):
        fused_spec_for({**gemma3, "hidden_activation": "relu"})


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
    for name in ("blk.4.ffn_down.scales", "blk.4.ffn_down.offsets"):  # zero both: the whole matrix reads as 0
        target = next(t for t in model.graph.initializer if t.name == name)
        entries = {e.key: e.value for e in target.external_data}
        with open(broken / entries["location"], "r+b") as fh:
            fh.seek(int(entries["offset"]))
            fh.write(b"\0" * int(entries["length"]))
    write_manifest(broken, art.manifest.model_copy(update={"files": list_files(broken)}))
    report = gate_artifact(broken, smollm2_hf)
    assert report.status == "failed", report.metrics


def test_nbits_roundtrip_error_is_small():
    rng = np.random.RandomState(0)
    w = rng.normal(size=(48, 96)).astype(np.float32)
    for bits, tol in ((8, 0.02), (4, 0.3)):
        for method in ("rtn", "search", "minmax"):
            q = nbits.quantize(w, bits, 32, method)
            err = np.abs(nbits.dequantize(q) - w).max()
            assert err < tol * np.abs(w).max(), (bits, method, err)
    for method in ("rtn", "minmax"):
        zero = nbits.quantize(np.zeros((4, 32), np.float32), 4, 32, method)
        assert not nbits.dequantize(zero).any()


def test_minmax_reproduces_a_q4_1_grid_exactly():
    """Weights that lie on a 4-bit grid with a float minimum (llama.cpp's Q4_1) come back exactly; an integer
    zero point cannot place that grid, so RTN does not."""
    rng = np.random.RandomState(1)
    d = rng.uniform(0.01, 0.02, size=(16, 3, 1)).astype(np.float16).astype(np.float32)
    m = rng.uniform(-0.2, -0.05, size=(16, 3, 1)).astype(np.float16).astype(np.float32)
    q = rng.randint(0, 16, size=(16, 3, 32))
    q[..., 0], q[..., 1] = 0, 15  # every block spans its whole grid, as Q4_1's do
    w = (q * d + m).reshape(16, 96).astype(np.float32)
    exact = nbits.quantize(w, 4, 32, "minmax")
    assert exact.offsets is not None and np.abs(nbits.dequantize(exact) - w).max() < 1e-6
    assert np.abs(nbits.dequantize(nbits.quantize(w, 4, 32, "rtn")) - w).max() > 1e-3


def test_minmax_offsets_are_added_by_the_graph(tmp_path):
    """MatMulNBits plus the block-sum correction computes x @ W.T for minmax-quantized W."""
    import onnxruntime as ort

    from edgekit.exporters.onnx_fused.build import DecoderBuilder, QuantPlan
    from edgekit.exporters.onnx_fused.graph import Graph

    rng = np.random.RandomState(2)
    w = rng.normal(size=(40, 64)).astype(np.float32)
    g = Graph(tmp_path / "m.onnx.data")
    x = g.input("x", np.float32, [1, "s", 64])
    builder = DecoderBuilder.__new__(DecoderBuilder)
    builder.plan, builder.matrices, builder.taps = QuantPlan(default_bits=4, method="minmax"), {}, {}
    y = builder.linear(g, x, "m", w, None, 4)
    g.op("Identity", [y], "out", outputs=["y"])
    g.output("y", np.float32, [1, "s", 40])
    g.save(tmp_path / "m.onnx", producer="test", metadata={})
    g.close()
    xs = rng.normal(size=(1, 5, 64)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": xs})[0]
    want = xs @ nbits.dequantize(nbits.quantize(w, 4, 32, "minmax")).T
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # accuracy level 4: int8 activations


def _correlated(rng, t: int, k: int) -> np.ndarray:
    """t activations of k channels that move together (a few shared factors), as a layer's inputs do."""
    factors = rng.normal(size=(t, 8)) @ rng.normal(size=(8, k))
    return (factors + 0.3 * rng.normal(size=(t, k))).astype(np.float32) * rng.uniform(0.1, 3, size=k).astype(np.float32)


def test_gptq_lowers_the_output_error_and_keeps_the_layout(tmp_path):
    """GPTQ's rounding, corrected through the inputs' second moment, gives a smaller error on the layer's output
    than the best per-block rounding; its blocks run through MatMulNBits as they are."""
    import onnxruntime as ort

    from edgekit.exporters.onnx_fused.build import DecoderBuilder, QuantPlan
    from edgekit.exporters.onnx_fused.graph import Graph

    rng = np.random.RandomState(3)
    x = _correlated(rng, 400, 128)
    w = rng.normal(size=(48, 128)).astype(np.float32) * 0.05
    h = x.T @ x / len(x)
    imp = np.diag(h).copy()

    def out_err(q):
        return float(np.square(x @ (nbits.dequantize(q) - w).T).mean())

    search, gptq = nbits.quantize(w, 4, 32, "search", imp), nbits.quantize(w, 4, 32, "gptq", imp, h)
    assert gptq.offsets is None and gptq.packed.shape == search.packed.shape
    assert out_err(gptq) < 0.8 * out_err(search)
    # without a second moment it is the importance-weighted search
    assert np.array_equal(nbits.quantize(w, 4, 32, "gptq", imp).packed, search.packed)

    g = Graph(tmp_path / "m.onnx.data")
    xin = g.input("x", np.float32, [1, "s", 128])
    builder = DecoderBuilder.__new__(DecoderBuilder)
    builder.plan = QuantPlan(default_bits=4, method="gptq", importance={"m": imp}, hessian={"m": h})
    builder.matrices, builder.taps = {}, {}
    g.op("Identity", [builder.linear(g, xin, "m", w, None, 4)], "out", outputs=["y"])
    g.output("y", np.float32, [1, "s", 48])
    g.save(tmp_path / "m.onnx", producer="test", metadata={})
    g.close()
    xs = x[None, :5]
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": xs})[0]
    want = xs @ nbits.dequantize(gptq).T
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_sensitive_matrices_spend_the_8_bit_share_on_the_costliest(tiny_llama):
    from edgekit.exporters.onnx_fused.build import QuantPlan
    from edgekit.exporters.onnx_fused.calib import sensitive_matrices
    from edgekit.sources import resolve_source

    src = resolve_source(str(tiny_llama))
    plan = QuantPlan(default_bits=4, method="rtn")
    chosen = sensitive_matrices(src.path, src.weight_files, plan, 0.3)
    everything = sensitive_matrices(src.path, src.weight_files, plan, 1.0)
    assert chosen and set(chosen.values()) == {8} and set(chosen) < set(everything)
    assert all(name.split(".")[-1] in ("attn_qkv", "attn_output", "ffn_gate_up", "ffn_down") for name in everything)
    assert sensitive_matrices(src.path, src.weight_files, plan, 0.0) == {}


def test_grid_fraction_tells_a_dequantized_checkpoint_from_a_float_one():
    rng = np.random.RandomState(4)
    w = rng.normal(size=(16, 96)).astype(np.float32)
    on_grid = nbits.dequantize(nbits.quantize(w, 4, 32, "minmax"))  # what dequantizing Q4_1 leaves
    assert nbits.grid_fraction(on_grid) > 0.99 and nbits.grid_fraction(w) < 0.05


def test_int4_plan_follows_the_source(tiny_llama, tmp_path):
    """A float checkpoint gets integer zero points and the 8-bit mix; the same checkpoint snapped onto a 4-bit grid
    (as a checkpoint dequantized from Q4_1 is) gets blocks with a float minimum, which reproduce it."""
    import shutil

    from safetensors.numpy import load_file, save_file

    snapped = tmp_path / "snapped"
    shutil.copytree(tiny_llama, snapped)
    for f in snapped.glob("*.safetensors"):
        tensors = load_file(f)
        for name, t in tensors.items():
            if t.ndim == 2 and t.shape[1] % 32 == 0:
                tensors[name] = nbits.dequantize(nbits.quantize(t.astype(np.float32), 4, 32, "minmax")).astype(t.dtype)
        save_file(tensors, f, metadata={"format": "pt"})
    float_art = export_onnx(tiny_llama, tmp_path / "float", quant="int4", via="fused")
    grid_art = export_onnx(snapped, tmp_path / "grid", quant="int4", via="fused")
    fp = float_art.manifest.quantization.params
    gp = grid_art.manifest.quantization.params
    assert fp["method"] == "search" and "source_on_4bit_grid" not in fp
    assert fp["overrides"]["blk.0.ffn_down"] == 8 and fp["eight_bit_rules"] == ["ffn_down", "attn_qkv:more"]
    assert gp["method"] == "minmax" and gp["source_on_4bit_grid"] is True and gp["overrides"] == {}
    assert float_art.manifest.gate.status == grid_art.manifest.gate.status == "passed"


def test_fused_runtime_imports_no_torch(tiny_fused):
    code = (
        "import sys, edgekit\n"
        f"m = edgekit.load({str(tiny_fused['llama'].path)!r})\n"
        "m.generate('hello', max_tokens=4)\n"
        "bad = [k for k in ('torch', 'transformers', 'optimum') if k in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("arch", FAMILIES)
def test_onnxruntime_genai_loads_the_artifact_and_agrees(arch, tiny_fused):
    import onnxruntime_genai as og  # installed by ./dev.sh setup (a missing one is a setup failure)
    art = tiny_fused[arch]
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
