"""The family registry (edgekit.families) is the one list: both exporters, the CLI help and the shape reader read it.

A fake family added as one row is seen by the GGUF converter and the fused ONNX builder (support checks and
real conversions of a tiny checkpoint relabelled to it), by ``export gguf --help`` and ``export onnx --help``,
and by the shape reader; without the row every one of them refuses it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit import families
from edgekit.errors import UnsupportedModelError
from edgekit.families import Family

# llama.cpp's llama architecture under a model type nothing else knows; its q/k projections under a name
# gguf-py's table lacks (the row's own tensor names)
FAKE = Family("fakellama", "LLAMA", permute_qk=True, rope_gguf=("none",), rope_onnx=("none", "linear"),
              tensor_names=(("model.layers.{bid}.self_attn.q_fancy", "blk.{bid}.attn_q"),),
              notes="a test family")
CONFIG = {"model_type": "fakellama", "architectures": ["FakeLlamaForCausalLM"], "hidden_size": 64,
          "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 128,
          "max_position_embeddings": 256, "vocab_size": 512}


@pytest.fixture
def fake_row(monkeypatch):
    monkeypatch.setattr(families, "FAMILIES", {**families.FAMILIES, FAKE.model_type: FAKE})


def _cli(*args):
    from edgekit.cli import _register, app

    _register()
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


@pytest.fixture
def fake_source(tiny_llama, tmp_path) -> Path:
    """The tiny llama relabelled as the fake family, its q projections under the row's own tensor name."""
    from safetensors.numpy import load_file, save_file

    src = tmp_path / "fakellama"
    shutil.copytree(tiny_llama, src)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "fakellama",
                                                 "architectures": ["FakeLlamaForCausalLM"]}))
    weights = src / "model.safetensors"
    tensors = load_file(weights)
    save_file({k.replace("self_attn.q_proj", "self_attn.q_fancy"): v for k, v in tensors.items()}, weights)
    return src


def test_a_new_row_passes_both_support_checks(fake_row):
    from edgekit.exporters.onnx_fused import covered_model_types, covers

    assert families.family_for(CONFIG, "gguf") is FAKE and families.family_for(CONFIG, "onnx") is FAKE
    assert covers(CONFIG) and "fakellama" in covered_model_types() and "fakellama" in families.model_types("gguf")
    # rope support is per exporter: the row gives the fused graph linear scaling and llama.cpp none
    linear = {**CONFIG, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}
    assert covers(linear)
    with pytest.raises(UnsupportedModelError, match="rope_scaling type 'linear'.*GGUF converter") as exc:
        families.family_for(linear, "gguf")
    assert exc.value.params == ("llama_cpp_converter",)


def test_without_the_row_both_exporters_refuse_it():
    from edgekit.exporters.onnx_fused import covers

    with pytest.raises(UnsupportedModelError, match="'fakellama' cannot be converted to GGUF.*supported: gemma"):
        families.family_for(CONFIG, "gguf")
    with pytest.raises(UnsupportedModelError, match="'fakellama' has no fused ONNX decoder builder") as exc:
        families.family_for(CONFIG, "onnx")
    assert exc.value.params == ("via",) and not covers(CONFIG)
    assert "fakellama" not in _cli("export", "gguf", "--help").output


def test_a_new_row_is_in_the_cli_help(fake_row):
    for group in ("gguf", "onnx"):
        helped = _cli("export", group, "--help")
        assert helped.exit_code == 0 and "fakellama" in helped.output, helped.output


def test_a_new_row_converts_to_gguf(fake_row, fake_source, tmp_path):
    from gguf import GGUFReader

    from edgekit.exporters.gguf.convert import convert
    from edgekit.sources import resolve_source

    result = convert(resolve_source(fake_source), tmp_path / "fake.gguf", "f32")
    assert result.spec == "fakellama" and result.gguf_arch == "llama"
    names = {t.name for t in GGUFReader(str(result.path)).tensors}
    assert {"blk.0.attn_q.weight", "blk.1.attn_q.weight", "token_embd.weight", "output.weight"} <= names


def test_a_new_row_builds_a_fused_graph(fake_row, fake_source, tmp_path):
    from edgekit.exporters.onnx_fused.build import DecoderBuilder, QuantPlan

    builder = DecoderBuilder(fake_source, sorted(fake_source.glob("*.safetensors")), QuantPlan())
    result = builder.build(tmp_path)
    assert result.spec == "fakellama" and builder.matrices
    assert "blk.1.attn_q.weight" in builder.w.refs and builder.shape == families.shape_of(CONFIG)


def test_the_shape_reader_reads_any_family(fake_row, tmp_path):
    from edgekit.manifest import model_info_from_folder

    s = families.shape_of(CONFIG)
    assert (s.n_layers, s.hidden, s.n_heads, s.n_kv_heads, s.head_dim, s.ffn, s.context, s.rope_dims) == (
        2, 64, 4, 2, 16, 128, 256, 16)
    # the manifest reads the same shape from the same keys (and the older spellings, and a text_config)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "text_config": CONFIG}))
    info = model_info_from_folder(tmp_path, "text-generation")
    assert (info.n_layers, info.hidden_size, info.n_heads, info.n_kv_heads, info.head_dim, info.context_length,
            info.vocab_size) == (2, 64, 4, 2, 16, 256, 512)
    gpt2 = families.read_shape({"n_layer": 3, "n_embd": 48, "n_head": 4, "n_positions": 128})
    assert (gpt2.n_layers, gpt2.hidden, gpt2.n_heads, gpt2.n_kv_heads, gpt2.head_dim, gpt2.context) == (
        3, 48, 4, 4, 12, 128)
    with pytest.raises(UnsupportedModelError, match="config.json lacks intermediate_size"):
        families.shape_of({**CONFIG, "intermediate_size": None})


def test_every_row_is_consistent():
    import gguf

    for family in families.ROWS:
        assert hasattr(gguf.MODEL_ARCH, family.gguf_arch), family.model_type
        assert family.rope_gguf and family.rope_onnx and "none" in family.rope_gguf
        assert family.embed_scale == family.norm_plus_one  # Gemma's two conventions go together
    assert families.FAMILIES["phi3"].rope_gguf == ("none",)  # LongRoPE refused by both exporters


def test_the_readme_shows_the_rows():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = families.markdown_table()
    assert table in readme, "README.md's Model families section shows other rows: paste\n" + table
    assert all(f"| {t} |" in table for t in families.FAMILIES)


def test_a_new_row_is_in_the_readme_table(fake_row):
    assert "| fakellama | " in families.markdown_table()


def test_tied_embeddings_follow_the_family_default():
    assert families.tied_embeddings({"model_type": "gemma"}) is True
    assert families.tied_embeddings({"model_type": "llama"}) is False
    assert families.tied_embeddings({"model_type": "llama", "tie_word_embeddings": True}) is True
    assert families.tied_embeddings({"model_type": "somethingelse"}) is True  # transformers' default
