"""edgekit's decoder graph rewrite (grouped-query attention without repeat_kv copies).

The rewritten graph must compute what the traced one computes, keep its inputs and
outputs (optimum still runs it), and no longer copy the KV cache per query head.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgekit.exporters.onnx import export_onnx
from tests.builders import make_tiny_decoder


def _cache_copies(path) -> int:
    """Expand nodes whose data comes from a present.* tensor (transformers' repeat_kv)."""
    g = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in g.node for o in n.output}
    count = 0
    for n in g.node:
        if n.op_type == "Expand":
            src = producer.get(n.input[0])
            if src is not None and src.op_type == "Unsqueeze" and src.input[0].startswith("present."):
                count += 1
    return count


def _decode(path, prompt: list[int], steps: int):
    """Prefill ``prompt``, then ``steps`` greedy tokens one at a time through the KV cache: all logits and presents."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    past = [i for i in sess.get_inputs() if i.name.startswith("past_key_values.")]
    feeds = {p.name: np.zeros((1, p.shape[1], 0, p.shape[3]), np.float32) for p in past}
    logits, presents, ids, n = [], [], list(prompt), 0
    for _ in range(steps + 1):
        f = dict(feeds, input_ids=np.asarray([ids], np.int64), attention_mask=np.ones((1, n + len(ids)), np.int64),
                 position_ids=np.arange(n, n + len(ids), dtype=np.int64)[None])
        out = sess.run(None, f)
        logits.append(out[0][0])
        presents.append(out[1:])
        feeds.update({p.name: v for p, v in zip(past, out[1:])})
        n += len(ids)
        ids = [int(out[0][0, -1].argmax())]
    return logits, presents


@pytest.fixture(scope="module")
def tiny_exports(tiny_llama, tmp_path_factory):
    root = tmp_path_factory.mktemp("gqa")
    return export_onnx(tiny_llama, root / "opt", via="optimum"), export_onnx(tiny_llama, root / "plain", optimize=False, via="optimum")


def test_rewrite_is_recorded_and_removes_cache_copies(tiny_exports):
    opt, plain = tiny_exports
    assert opt.manifest.graph_rewrites == ["share_kv_heads: 2 attention blocks read the KV cache in place of repeat_kv copies"]
    assert plain.manifest.graph_rewrites == []
    assert _cache_copies(plain.model_path) == 4  # K and V in each of 2 layers
    assert _cache_copies(opt.model_path) == 0
    assert opt.manifest.gate.status == "passed" and opt.manifest.gate.metrics["kl_mean"] < 1e-6
    io = lambda p: ([(i.name, i.shape) for i in ort.InferenceSession(str(p)).get_inputs()],  # noqa: E731
                    [(o.name, o.shape) for o in ort.InferenceSession(str(p)).get_outputs()])
    assert io(opt.model_path) == io(plain.model_path)


def test_rewritten_graph_computes_the_same(tiny_exports):
    opt, plain = tiny_exports
    prompt = [5, 17, 33, 2, 90, 41, 7, 250, 11]
    lo, po = _decode(opt.model_path, prompt, 12)
    lp, pp = _decode(plain.model_path, prompt, 12)
    for a, b in zip(lo, lp):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    for a, b in zip(po, pp):
        assert all(x.shape == y.shape and np.abs(x - y).max() < 1e-4 for x, y in zip(a, b))


def test_rewritten_graph_still_runs_in_optimum(tiny_exports, tiny_llama):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM

    opt, _ = tiny_exports
    ids = torch.tensor([[5, 17, 33, 90, 41, 7]])
    ours = ORTModelForCausalLM.from_pretrained(opt.path, file_name="model.onnx", use_cache=True)
    ref = AutoModelForCausalLM.from_pretrained(tiny_llama)
    kw = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
    assert ours.generate(ids, **kw).tolist() == ref.generate(ids, **kw).tolist()


def test_models_without_grouped_heads_are_left_alone(tmp_path):
    src = make_tiny_decoder(tmp_path / "mha", "llama", kv_heads=4)
    art = export_onnx(src, tmp_path / "out", via="optimum")
    assert art.manifest.graph_rewrites == [] and art.manifest.gate.status == "passed"


def test_qwen2_with_bias_is_rewritten(tmp_path):
    src = make_tiny_decoder(tmp_path / "qwen2", "qwen2")
    opt = export_onnx(src, tmp_path / "opt", via="optimum")
    plain = export_onnx(src, tmp_path / "plain", optimize=False, run_gate=False, via="optimum")
    assert opt.manifest.graph_rewrites and _cache_copies(opt.model_path) == 0
    lo, _ = _decode(opt.model_path, [3, 4, 5, 6], 6)
    lp, _ = _decode(plain.model_path, [3, 4, 5, 6], 6)
    assert all(np.abs(a - b).max() < 1e-4 for a, b in zip(lo, lp))


def test_rewrite_failure_is_one_clear_export_error(tmp_path):
    from edgekit.errors import ExportError
    from edgekit.exporters.onnx_graph import optimize_decoder

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ExportError, match="optimize=False"):
        optimize_decoder(bad, 4, 2, 16)
    assert optimize_decoder(bad, 4, 4, 16) == []  # nothing grouped: the file is not even read
