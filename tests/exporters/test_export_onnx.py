"""ONNX export end to end: tiny random models (fast) and the packaged real models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from edgekit.errors import QualityGateError
from edgekit.artifact import Artifact
from edgekit.exporters.onnx import export_onnx
from edgekit.fileio import sha256_file
from edgekit.manifest import read_manifest, verify_files
from edgekit.quality import BUILTIN_PROMPTS, prompts_digest
from tests.conftest import error_line


def _inputs(path):
    return [i.name for i in ort.InferenceSession(str(path)).get_inputs()]


# ------------------------------------------------------------------ tiny random models


def test_tiny_decoder_export_has_kv_cache_and_passes_gate(tiny_llama, tmp_path):
    art = export_onnx(tiny_llama, tmp_path / "out")
    m = art.manifest
    assert m.task == "text-generation" and m.precision == "fp32" and m.gate.status == "passed"
    assert m.gate.kind == "decoder" and m.gate.metrics["kl_mean"] < 1e-6 and m.gate.metrics["top1"] >= 0.99
    assert m.gate.prompts_sha256 == prompts_digest(BUILTIN_PROMPTS) and m.gate.n_prompts == len(BUILTIN_PROMPTS)
    assert m.model.n_layers == 2 and m.model.n_kv_heads == 2 and m.model.head_dim == 16 and m.model.eos_token_ids == [2]
    names = _inputs(art.model_path)
    assert "past_key_values.0.key" in names and "past_key_values.1.value" in names
    assert not list(tmp_path.glob(".out*")), "staging folder left behind"
    verify_files(art.path, read_manifest(art.path))


def test_tiny_encoder_and_classifier_exports(tiny_bert, tiny_bert_classifier, tmp_path):
    enc = export_onnx(tiny_bert, tmp_path / "enc", quant="int8").manifest
    assert enc.task == "feature-extraction" and enc.precision == "int8" and enc.gate.status == "passed"
    assert set(enc.gate.metrics) == {"cos_mean", "cos_min"} and enc.stage_gates[0].precision == "fp32"
    assert enc.quantization.method == "quantize_dynamic" and enc.quantization.params["per_channel"] is True
    cls = export_onnx(tiny_bert_classifier, tmp_path / "cls").manifest
    assert cls.task == "text-classification" and cls.gate.metrics["label_agreement"] >= 0.75
    # fp32: labels can differ only where two logits tie within prob_diff_max
    assert cls.gate.metrics["prob_diff_max"] < 1e-4 and cls.model.labels == ["negative", "neutral", "positive"]


def test_task_override_and_prompts_file(tiny_llama, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello world\nthe capital of France is\n")
    art = export_onnx(tiny_llama, tmp_path / "out", task="text-generation", prompts=prompts)
    assert art.manifest.gate.n_prompts == 2
    assert art.manifest.gate.prompts_sha256 == prompts_digest(["hello world", "the capital of France is"])


def test_pickle_weights_export_with_allow_pickle(tmp_path):
    from tests.builders import make_tiny_decoder

    src = make_tiny_decoder(tmp_path / "pickled", "llama", safetensors=False)
    assert (src / "pytorch_model.bin").exists() and not list(src.glob("*.safetensors"))
    art = export_onnx(src, tmp_path / "out", allow_pickle=True)
    assert art.manifest.gate.status == "passed"


def test_no_gate_is_recorded(tiny_bert, tmp_path):
    art = export_onnx(tiny_bert, tmp_path / "out", run_gate=False)
    assert art.manifest.gate.status == "skipped" and art.manifest.gate.metrics == {}


def test_postprocess_damage_fails_gate_and_leaves_nothing(tiny_llama, tmp_path):
    def zero_lm_head(model):
        from onnx import numpy_helper

        biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
        biggest.CopyFrom(numpy_helper.from_array(np.zeros(tuple(biggest.dims), np.float32), biggest.name))

    with pytest.raises(QualityGateError) as info:
        export_onnx(tiny_llama, tmp_path / "out", postprocess=zero_lm_head)
    assert info.value.report.status == "failed" and info.value.report.metrics["kl_mean"] > 1e-2
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ bad input through the CLI


@pytest.fixture
def not_a_model(tmp_path):
    d = tmp_path / "not-a-model"
    d.mkdir()
    (d / "README.md").write_text("hello")
    return d


def _bad(cli, tmp_path, *args, match: str):
    out = tmp_path / "OUT"
    proc = cli("export", "onnx", *args, "-o", out) if "-o" not in args else cli("export", "onnx", *args)
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert match in line, line
    return out


def test_bad_missing_path(cli, tmp_path):
    out = _bad(cli, tmp_path, tmp_path / "nowhere", match="does not exist")
    assert not out.exists()


def test_bad_not_a_model(cli, tmp_path, not_a_model):
    out = _bad(cli, tmp_path, not_a_model, match="not a Hugging Face model folder (no config.json)")
    assert not out.exists()


def test_bad_architecture(cli, tmp_path, tiny_bert):
    src = tmp_path / "mystery"
    shutil.copytree(tiny_bert, src)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(model_type="mystery", architectures=["MysteryForCausalLM"])
    (src / "config.json").write_text(json.dumps(cfg))
    out = _bad(cli, tmp_path, src, match="model type 'mystery' cannot be exported")
    assert "llama" in error_line(cli("export", "onnx", src, "-o", out)) and not out.exists()


def test_bad_task(cli, tmp_path, tiny_bert):
    out = _bad(cli, tmp_path, tiny_bert, "--task", "text-generation",
               match="a bert model cannot do text-generation; this model supports: feature-extraction")
    assert not out.exists()


def test_bad_pickle_only(cli, tmp_path, tiny_bert):
    src = tmp_path / "pickled"
    shutil.copytree(tiny_bert, src)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    out = _bad(cli, tmp_path, src, match="--allow-pickle")
    assert not out.exists()


def test_bad_corrupt_safetensors(cli, tmp_path, tiny_bert):
    src = tmp_path / "corrupt"
    shutil.copytree(tiny_bert, src)
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[: len(data) - 1000])
    out = _bad(cli, tmp_path, src, match="model.safetensors is not a valid safetensors file")
    assert not out.exists()


def test_bad_output_exists(cli, tmp_path, tiny_bert):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _bad(cli, tmp_path, tiny_bert, match="already exists")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_unwritable_output(cli, tmp_path, tiny_bert):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = cli("export", "onnx", tiny_bert, "-o", blocker / "OUT")
    assert proc.returncode == 2 and "cannot write" in error_line(proc)
    proc = cli("export", "onnx", tiny_bert, "-o", "/sys/edgekit-OUT")
    assert proc.returncode == 2 and "not writable" in error_line(proc)
    assert not (blocker / "OUT").exists()


def test_bad_empty_prompts(cli, tmp_path, tiny_bert):
    prompts = tmp_path / "empty.txt"
    prompts.write_text("\n\n")
    out = _bad(cli, tmp_path, tiny_bert, "--prompts", prompts, match="is empty")
    assert not out.exists()


def test_bad_option_values(cli, tmp_path, tiny_bert):
    proc = cli("export", "onnx", tiny_bert, "-o", tmp_path / "OUT", "--quantize", "int3")
    assert proc.returncode == 2 and "int3" in error_line(proc)
    proc = cli("export", "onnx", tiny_bert, "-o", tmp_path / "OUT", "--threshold", "bogus=1")
    assert proc.returncode == 2 and "--threshold" in error_line(proc)
    assert not (tmp_path / "OUT").exists()


# ------------------------------------------------------------------ the packaged real models


@pytest.mark.slow
def test_minilm_fp32_and_int8(onnx_artifact):
    fp32: Artifact = onnx_artifact("minilm-fp32")
    int8: Artifact = onnx_artifact("minilm-int8")
    for art in (fp32, int8):
        assert art.manifest.gate.status == "passed" and art.manifest.task == "feature-extraction"
        assert art.manifest.model.pooling == "mean" and art.manifest.model.normalize is True
    assert fp32.manifest.gate.metrics["cos_min"] > 0.9999
    assert int8.manifest.gate.metrics["cos_mean"] >= 0.98
    ratio = int8.model_path.stat().st_size / fp32.model_path.stat().st_size
    assert ratio <= 0.3, f"int8/fp32 size ratio {ratio:.3f}"
    versions = fp32.manifest.versions
    assert {"edgekit", "torch", "transformers", "optimum", "onnx", "onnxruntime"} <= set(versions)
    for f in fp32.manifest.files:
        assert sha256_file(fp32.path / f.path) == f.sha256


@pytest.mark.slow
def test_smollm2_fp32_matches_transformers(onnx_artifact):
    art: Artifact = onnx_artifact("smollm2-fp32")
    m = art.manifest
    assert m.gate.status == "passed" and m.gate.metrics["kl_mean"] < 1e-4 and m.gate.metrics["top1"] >= 0.99
    assert m.model.architecture == "llama" and m.model.n_layers == 30 and m.model.n_kv_heads == 3
    assert m.model.n_params and 130e6 < m.model.n_params < 140e6
    names = _inputs(art.model_path)
    assert sum(n.startswith("past_key_values.") for n in names) == 60
    assert m.graph_rewrites and m.graph_rewrites[0].startswith("share_kv_heads: 30 attention blocks")


@pytest.mark.slow
def test_smollm2_int8_passes_gate(onnx_artifact):
    fp32, int8 = onnx_artifact("smollm2-fp32"), onnx_artifact("smollm2-int8")
    m = int8.manifest
    assert m.gate.status == "passed" and m.precision == "int8"
    assert m.stage_gates[0].metrics["kl_mean"] < 1e-4
    assert m.gate.metrics["kl_mean"] <= m.gate.thresholds["kl_mean"]
    assert int8.model_path.stat().st_size < 0.5 * fp32.model_path.stat().st_size


@pytest.mark.slow
def test_damaged_smollm2_export_fails_gate_via_cli(cli, tmp_path):
    script = tmp_path / "damage.py"
    script.write_text(
        "import numpy as np\n"
        "from onnx import numpy_helper\n"
        "def zero_down_proj(model):\n"
        "    names = {n.input[1] for n in model.graph.node if n.op_type == 'MatMul' and 'layers.10/mlp/down_proj' in n.name}\n"
        "    for t in model.graph.initializer:\n"
        "        if t.name in names:\n"
        "            t.CopyFrom(numpy_helper.from_array(np.zeros(tuple(t.dims), np.float32), t.name))\n"
        "            return\n"
        "    raise RuntimeError('no down_proj found')\n"
    )
    out = tmp_path / "damaged"
    proc = cli("export", "onnx", "packaged:smollm2", "-o", out, "--postprocess", f"{script}:zero_down_proj")
    assert proc.returncode == 1, proc.stderr
    assert "quality gate failed for the fp32 artifact" in error_line(proc)
    assert "kl_mean" in proc.stderr and "FAIL" in proc.stderr  # the metrics table
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["damage.py"]


@pytest.mark.slow
def test_inspect_shows_and_verifies(cli, onnx_artifact, tmp_path):
    art = onnx_artifact("minilm-int8")
    proc = cli("inspect", art.path)
    assert proc.returncode == 0, proc.stderr
    assert "quantize_dynamic" in proc.stdout and "cos_mean" in proc.stdout and "verified" in proc.stdout
    data = json.loads(cli("inspect", art.path, "--json").stdout)
    assert data["manifest"]["precision"] == "int8" and data["verified"] is True
    bad = tmp_path / "tampered"
    shutil.copytree(art.path, bad)
    with open(bad / "tokenizer.json", "a") as fh:
        fh.write(" ")
    proc = cli("inspect", bad)
    assert proc.returncode == 2 and "'tokenizer.json'" in error_line(proc)
    proc = cli("inspect", tmp_path)
    assert proc.returncode == 2 and "not an edgekit artifact" in error_line(proc)


def test_large_models_use_external_data(tiny_llama, tmp_path, monkeypatch):
    """Models over 2 GB are written with external data; the threshold is lowered so a tiny model crosses it."""
    import edgekit
    from edgekit.exporters import onnx_quant

    monkeypatch.setattr(onnx_quant, "TWO_GB", 1000)
    art = export_onnx(tiny_llama, tmp_path / "out", quant="int8")
    names = sorted(f.path for f in art.manifest.files)
    assert "model.onnx.data" in names and art.manifest.gate.status == "passed"
    assert (art.path / "model.onnx").stat().st_size < (art.path / "model.onnx.data").stat().st_size
    assert len(edgekit.load(art.path).generate("hello", max_tokens=3, ignore_eos=True).token_ids) == 3


@pytest.mark.slow
def test_gate_command_rechecks_onnx_and_gguf_artifacts(cli, onnx_artifact, tiny_llama, tmp_path):
    from edgekit.exporters.gguf import export_gguf

    art = onnx_artifact("minilm-int8")
    proc = cli("gate", art.path, "--source", "packaged:minilm")
    assert proc.returncode == 0, proc.stderr
    assert "cos_mean" in proc.stdout and "pass" in proc.stdout
    strict = cli("gate", art.path, "--source", "packaged:minilm", "--threshold", "cos_min=0.99999")
    assert strict.returncode == 1 and "quality gate failed" in error_line(strict) and "FAIL" in strict.stdout
    gguf = export_gguf(tiny_llama, tmp_path / "tiny-q8_0", quant="q8_0")
    proc = cli("gate", gguf.path, "--source", tiny_llama, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "passed" and report["precision"] == "q8_0" and report["metrics"]["kl_mean"] >= 0
