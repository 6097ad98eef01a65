"""ONNX packages: the .ort runs like the .onnx, the operator config is the graph's, the EP report is the checker's.

Each check runs on a tiny random model (seconds) and, marked slow, on the packaged real
models: SmolLM2 int8 (greedy tokens) and MiniLM fp32 (embeddings within 1e-5).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.package.conftest import config_op_types, graph_op_types, greedy, optimized_like_converter, session

PROMPT = "The capital of France is"


def _prompt_ids(folder, text=PROMPT):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


def _checker_counts(model) -> dict[str, list[tuple[int, int, int]]]:
    """Run onnxruntime's checker as its docs say (python -m ...) and read its counts from the log, per EP:
    [(partitions, supported nodes, nodes) as the model is, then with fixed shapes when it checked that]."""
    proc = subprocess.run([sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(model)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts: dict[str, list[tuple[int, int, int]]] = {}
    for m in re.finditer(r"(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+?) EP\.",
                         proc.stdout + proc.stderr):
        counts.setdefault(m.group(4), []).append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
    assert set(counts) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}, proc.stderr[-2000:]
    return counts


def _assert_report_matches_checker(package_path, model):
    report = json.loads((package_path / "ep_report.json").read_text())
    for ep, runs in _checker_counts(model).items():
        entry = report["eps"][ep]
        assert runs[0] == (entry["partitions"], entry["supported_nodes"], entry["nodes"]), ep
        fixed = entry["with_fixed_shapes"]
        assert len(runs) == (2 if fixed else 1), ep
        if fixed:
            assert runs[1] == (fixed["partitions"], fixed["supported_nodes"], fixed["nodes"]), ep
        assert sum(entry["partition_sizes"]) == entry["supported_nodes"]


# ---- tiny models (fast) ------------------------------------------------------------------------------

def test_tiny_ort_decoder_gives_the_same_greedy_tokens(tiny_onnx_package, tiny_onnx_artifact):
    prompt = _prompt_ids(tiny_onnx_package.path)
    ref = greedy(session(tiny_onnx_artifact.path / "model.onnx"), prompt, 12)
    assert greedy(session(tiny_onnx_package.path / "model.ort"), prompt, 12) == ref


def test_tiny_required_operators_are_the_graphs_op_types(tiny_onnx_package, tiny_onnx_artifact, tmp_path):
    optimized = optimized_like_converter(tiny_onnx_artifact.path / "model.onnx", tmp_path / "opt.onnx", arm=True)
    listed = config_op_types(tiny_onnx_package.path / "required_operators.config")
    assert listed == graph_op_types(optimized)
    assert ("ai.onnx", "MatMul") in listed or ("com.microsoft", "FusedMatMul") in listed


def test_tiny_usability_report_matches_onnxruntimes_checker(tiny_onnx_package, tiny_onnx_artifact):
    _assert_report_matches_checker(tiny_onnx_package.path, tiny_onnx_artifact.path / "model.onnx")


def test_tiny_package_contents(tiny_onnx_package, tiny_onnx_artifact):
    from edgekit.fileio import sha256_file
    from edgekit.package import read_package
    from edgekit.package.sizes import FIGURES, PER_OPERATOR_BYTES

    pkg, art = tiny_onnx_package, tiny_onnx_artifact
    m = read_package(pkg.path)  # verifies every file's sha256
    assert m.platform == "android" and m.format == "onnx" and m.model_file == "model.ort"
    assert {f.path for f in m.files} == {"model.ort", "required_operators.config", "ep_report.json", "runtime.json",
                                         "size_report.json", "tokenizer.json", "tokenizer_config.json"}
    assert sha256_file(pkg.path / "tokenizer.json") == sha256_file(art.path / "tokenizer.json")
    assert m.gate == art.manifest.gate and m.gate.metrics  # the gate metrics carried over
    assert m.threads == 4 and m.target is None and m.context == min(256, 4096)
    assert m.chat is not None and m.chat.exact and m.chat.roles["user"].prefix == "<|im_start|>user\n"
    assert m.generation["stop"] == ["<|im_end|>"]
    runtime = json.loads((pkg.path / "runtime.json").read_text())
    assert runtime["execution_providers"][-1]["name"] == "CPU"
    assert runtime["session_options"]["intra_op_num_threads"] == 4
    assert runtime["conversion"]["target_platform"] == "arm"
    assert runtime["decoder"]["kv_inputs"] == 2 * 2  # 2 layers, key and value
    report = json.loads((pkg.path / "size_report.json").read_text())
    n_ops = len(config_op_types(pkg.path / "required_operators.config"))
    assert report["runtime"]["operators"] == n_ops
    assert report["runtime"]["estimated_bytes"] == FIGURES["baseline"].bytes + n_ops * PER_OPERATOR_BYTES
    assert all(f["source"].startswith("https://") for f in report["runtime"]["figures"])
    flags = report["reduced_build"]["flags"]
    assert flags[flags.index("--include_ops_by_config") + 1] == "required_operators.config"
    assert "--minimal_build" in flags and "--android" in flags and "--enable_reduced_operator_type_support" in flags
    assert report["model_bytes"] == (pkg.path / "model.ort").stat().st_size


def test_tiny_package_ios_with_xnnpack(tiny_onnx_artifact, tmp_path):
    import edgekit

    pkg = edgekit.package(tiny_onnx_artifact.path, tmp_path / "ios", platform="ios", ep="xnnpack", threads=2)
    runtime = json.loads((pkg.path / "runtime.json").read_text())
    assert [p["name"] for p in runtime["execution_providers"]] == ["XNNPACK", "CPU"]
    assert runtime["execution_providers"][0]["options"] == {"intra_op_num_threads": "2"}
    assert runtime["session_options"]["intra_op_num_threads"] == 1  # XNNPACK brings its own pool
    flags = pkg.size_report["reduced_build"]["flags"]
    assert "--ios" in flags and "--use_xnnpack" in flags and flags[flags.index("--minimal_build") + 1] == "extended"


def test_tiny_encoder_package_is_generic_without_a_target(tiny_encoder_artifact, tmp_path):
    import edgekit

    pkg = edgekit.package(tiny_encoder_artifact.path, tmp_path / "enc")
    m = pkg.manifest
    assert m.platform == "generic" and m.task == "feature-extraction" and m.threads is None
    assert m.chat is None and m.generation is None and m.memory.kv_bytes == 0
    assert m.context == tiny_encoder_artifact.manifest.model.context_length
    runtime = json.loads((pkg.path / "runtime.json").read_text())
    assert runtime["conversion"]["target_platform"] is None  # portable: no ARM-only or x86-only choices
    assert runtime["encoder"]["pooling"] == tiny_encoder_artifact.manifest.model.pooling
    assert "--android" not in pkg.size_report["reduced_build"]["flags"]
    assert m.tokenizer.add_special_tokens  # BERT's [CLS] ... [SEP]


def test_edgekit_package_is_callable_after_importing_a_submodule():
    code = ("import edgekit.package.schema, edgekit; assert callable(edgekit.package); "
            "import edgekit.package as p; assert callable(p) and p.package is edgekit.package.package")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_inspect_shows_a_package(tiny_onnx_package, cli):
    proc = cli("inspect", tiny_onnx_package.path)
    assert proc.returncode == 0, proc.stderr
    assert "package" in proc.stdout and "model.ort" in proc.stdout and "verified" in proc.stdout
    proc = cli("inspect", tiny_onnx_package.path, "--json")
    data = json.loads(proc.stdout)
    assert data["package"]["model_file"] == "model.ort" and data["size_report"]["runtime"]["estimated_bytes"] > 0


# ---- the packaged real models (slow) ---------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_ort_gives_the_same_greedy_tokens(smol_package, onnx_artifact):
    art = onnx_artifact("smollm2-int8")
    prompt = _prompt_ids(smol_package.path)
    ref = greedy(session(art.path / "model.onnx"), prompt, 16)
    assert len(set(ref)) > 3  # a real continuation, not one token repeated
    assert greedy(session(smol_package.path / "model.ort"), prompt, 16) == ref


@pytest.mark.slow
def test_minilm_ort_gives_the_same_embeddings(minilm_package, onnx_artifact):
    import edgekit
    from edgekit.runtimes.onnx import open_onnx

    art = onnx_artifact("minilm-fp32")
    texts = ["Small models run on phones.", "Edge devices answer quickly.", "A longer sentence about the weather "
             "in Paris, which is mild in spring and warm in summer."]
    with edgekit.load(art.path) as ref_model:
        ref = ref_model.embed(texts)
    m = minilm_package.manifest
    with open_onnx(minilm_package.path, m.model_file, m.task, m.model) as ort_model:  # edgekit's runtime on the .ort
        got = ort_model.embed(texts)
    assert np.abs(got - ref).max() <= 1e-5
    # and the raw hidden states of one onnxruntime session each
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_package.path / "tokenizer.json"))
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.asarray([e.attention_mask for e in enc], dtype=np.int64),
             "token_type_ids": np.zeros_like(ids)}
    a = session(art.path / "model.onnx").run(None, feeds)[0]
    b = session(minilm_package.path / "model.ort").run(None, feeds)[0]
    assert np.abs(a - b).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("which", ["smollm2-int8", "minilm-fp32"])
def test_required_operators_are_the_graphs_op_types(which, request, onnx_artifact, tmp_path):
    pkg = request.getfixturevalue("smol_package" if which.startswith("smollm2") else "minilm_package")
    art = onnx_artifact(which)
    optimized = optimized_like_converter(art.path / "model.onnx", tmp_path / "opt.onnx", arm=True)
    assert config_op_types(pkg.path / "required_operators.config") == graph_op_types(optimized)


@pytest.mark.slow
def test_minilm_usability_report_matches_onnxruntimes_checker(minilm_package, onnx_artifact):
    _assert_report_matches_checker(minilm_package.path, onnx_artifact("minilm-fp32").path / "model.onnx")
    report = json.loads((minilm_package.path / "ep_report.json").read_text())
    assert report["recommended"]["platform"] == "ios"
    assert report["xnnpack"]["supported_nodes"] <= report["xnnpack"]["nodes"]


@pytest.mark.slow
def test_smollm2_package_for_pixel_8(smol_package, onnx_artifact):
    m = smol_package.manifest
    art = onnx_artifact("smollm2-int8")
    assert m.platform == "android" and m.target == "pixel-8" and m.threads == 4
    assert m.context == 4096 and m.memory.fits  # 8192 trained, capped at 4096; 266 MB + 189 MB KV < 4 GB
    assert m.memory.weights_bytes == (art.path / "model.onnx").stat().st_size
    assert m.gate.metrics == art.manifest.gate.metrics
    assert m.tokenizer.special_tokens["eos_token"].text == "<|im_end|>" and m.tokenizer.eos_token_ids == [2]
    assert m.chat.exact and "SmolLM" in m.chat.preamble_without_system
    assert ("com.microsoft", "MatMulNBits") in config_op_types(smol_package.path / "required_operators.config")
