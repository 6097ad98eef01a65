"""Every model family (edgekit.families) is proven by a tiny random model: f32 GGUF vs transformers, near-exact."""

from __future__ import annotations

import json

import pytest
from gguf import GGUFReader

from edgekit.errors import QualityGateError, UnsupportedModelError
from edgekit.exporters.gguf import export_gguf
from edgekit import families
from tests.exporters.gguf.models import ARCHS, TINY

GGUF_ARCH = {"llama": "llama", "llama3": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
             "gemma": "gemma", "phi3": "phi3", "gemma3_text": "gemma3"}
TIED = ("gemma", "gemma3_text")  # the output layer is the embedding


def test_every_registered_model_type_has_a_tiny_model():
    assert sorted({model_type for model_type, _ in TINY.values()}) == families.model_types("gguf")
    assert set(families.FAMILIES) <= set(ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_f32_matches_transformers(arch, tiny_arch, tmp_path):
    src = tiny_arch(arch)
    art = export_gguf(src, tmp_path / "out", quant="f32")
    m = art.manifest
    assert m.gate.status == "passed" and m.gate.metrics["kl_mean"] < 1e-5 and m.gate.metrics["top1"] >= 0.98
    reader = GGUFReader(str(art.model_path))
    arch_name = reader.fields["general.architecture"].contents()
    assert arch_name == GGUF_ARCH[arch] == m.quantization.params["gguf_arch"]
    names = {t.name for t in reader.tensors}
    assert ("rope_freqs.weight" in names) == (arch == "llama3")
    assert ("output.weight" in names) == (arch not in TIED)
    if arch in ("qwen3", "gemma", "gemma3_text"):  # head_dim 32 != hidden / heads
        assert reader.fields[f"{arch_name}.attention.key_length"].contents() == 32
    if arch in ("qwen3", "gemma3_text"):
        assert "blk.0.attn_q_norm.weight" in names
    if arch == "gemma3_text":  # layers sliding, sliding, full; each of these keys changes llama.cpp's logits
        assert "blk.0.post_ffw_norm.weight" in names and "blk.0.post_attention_norm.weight" in names
        assert reader.fields["gemma3.attention.sliding_window"].contents() == 8
        assert reader.fields["gemma3.attention.sliding_window_pattern"].contents() == 3
        assert reader.fields["gemma3.rope.freq_base_swa"].contents() == 20000.0
        assert reader.fields["gemma3.rope.scaling.factor"].contents() == 2.0


def test_llama3_rope_factors_matter(tiny_arch, tmp_path):
    """Without the generated rope_freqs (set to 1) llama.cpp's outputs leave the f32 bounds."""
    from gguf import GGUFReader as Reader

    def flatten(path):
        reader = Reader(str(path), "r+")
        next(t for t in reader.tensors if t.name == "rope_freqs.weight").data[...] = 1.0
        reader.data.flush()

    with pytest.raises(QualityGateError):
        export_gguf(tiny_arch("llama3"), tmp_path / "out", quant="f32", postprocess=flatten)


@pytest.mark.parametrize("change", [
    {"query_pre_attn_scalar": 20},
    {"final_logit_softcapping": 3.0},
    {"attn_logit_softcapping": 50.0},
    {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"]},
])
def test_gemma3_settings_llama_cpp_would_run_differently_are_refused(change, tiny_arch, tmp_path):
    """llama.cpp's gemma3 reads no query_pre_attn_scalar nor softcapping, and only a periodic layer pattern."""
    import shutil

    src = tmp_path / "gemma3"
    shutil.copytree(tiny_arch("gemma3_text"), src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(UnsupportedModelError, match=next(iter(change)) if "layer_types" not in change else "pattern"):
        export_gguf(src, tmp_path / "out", quant="f32")
    assert not (tmp_path / "out").exists()


def test_a_vocabulary_with_duplicate_tokens_is_refused_before_writing(tmp_path):
    """llama.cpp aborts on a GGUF whose vocabulary repeats a token: the converter refuses it first."""
    from edgekit.errors import UnsupportedModelError
    from edgekit.exporters.gguf.vocab import Vocab, check_unique

    check_unique(Vocab(model="gpt2", tokens=["a", "b", "ab"], types=[1, 1, 1]), tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"duplicate token.*'a' is token 0 and token 2"):
        check_unique(Vocab(model="gpt2", tokens=["a", "b", "a"], types=[1, 1, 1]), tmp_path)
    with pytest.raises(UnsupportedModelError, match="duplicate token"):  # llama.cpp's name for an empty token
        check_unique(Vocab(model="gpt2", tokens=["", "[EMPTY_0]"], types=[1, 1]), tmp_path)
