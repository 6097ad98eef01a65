"""Fixtures for the packaging tests: tiny artifacts (seconds) and packages of the real models (once per session).

Packages of the packaged real models come from the session's shared artifacts
(``onnx_artifact`` in tests/conftest.py, exported once); converting SmolLM2 to ORT
format takes most of a minute, so each real package is made once and shared.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

TINY_TARGET = """
schema_version = 1
name = "{name}"
arch = "arm64"
os = "android"
threads = 3
ram_gb = {{ value = 1.0, source = "test device" }}
app_ram_budget_gb = {{ value = {budget}, source = "test device" }}
memory_bandwidth_gbs = {{ value = 10.0, source = "test device" }}
peak_gflops_fp32 = {{ value = 10.0, source = "test device" }}
peak_gops_int8 = {{ value = 20.0, source = "test device" }}

[[clusters]]
name = "Cortex-A55"
cores = 4
"""


@pytest.fixture
def target_file(tmp_path):
    """``target_file(budget_gb)`` -> a .toml target profile with that app RAM budget (3 threads, android)."""

    def make(budget_gb: float, name: str = "test-phone") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_TARGET.format(name=name, budget=budget_gb))
        return path

    return make


@pytest.fixture(scope="session")
def tiny_src(tiny_llama, tmp_path_factory) -> Path:
    """A copy of the tiny llama folder that GGUF artifacts name as their source (tests may edit its tokenizer)."""
    dest = tmp_path_factory.mktemp("pkg-src") / "tiny-llama"
    shutil.copytree(tiny_llama, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_gguf_artifact(tiny_src, tmp_path_factory):
    from edgekit.exporters.gguf import export_gguf

    return export_gguf(tiny_src, tmp_path_factory.mktemp("pkg-art") / "tiny-gguf", quant="f16")


@pytest.fixture(scope="session")
def tiny_onnx_artifact(tiny_onnx):
    return tiny_onnx  # the session's tiny ONNX decoder (tests/conftest.py), not a second export of it


@pytest.fixture(scope="session")
def tiny_encoder_artifact(tiny_encoder):
    return tiny_encoder


@pytest.fixture(scope="session")
def tiny_onnx_package(tiny_onnx_artifact, tmp_path_factory):
    import edgekit

    return edgekit.package(tiny_onnx_artifact.path, tmp_path_factory.mktemp("pkg") / "tiny-android", platform="android")


@pytest.fixture(scope="session")
def smol_package(onnx_artifact, tmp_path_factory):
    """SmolLM2 int8 (MatMulNBits) packaged for a Pixel 8."""
    import edgekit

    art = onnx_artifact("smollm2-int8")
    return edgekit.package(art.path, tmp_path_factory.mktemp("pkg") / "smollm2-int8-android", target="pixel-8")


@pytest.fixture(scope="session")
def minilm_package(onnx_artifact, tmp_path_factory):
    """MiniLM fp32 packaged for iOS."""
    import edgekit

    art = onnx_artifact("minilm-fp32")
    return edgekit.package(art.path, tmp_path_factory.mktemp("pkg") / "minilm-ios", platform="ios")


# ---- helpers the tests share ----------------------------------------------------------------------

def session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def greedy(sess, prompt_ids: list[int], n: int) -> list[int]:
    """A plain onnxruntime greedy loop over a decoder with a KV cache (inputs and outputs read from the session)."""
    inputs = {i.name: i for i in sess.get_inputs()}
    past_names = [n_ for n_ in inputs if n_.startswith("past_key_values.")]
    present_names = [o.name for o in sess.get_outputs() if o.name.startswith("present")]
    first = inputs[past_names[0]]
    dtype = np.float16 if "float16" in first.type else np.float32
    past = {name: np.zeros((1, first.shape[1], 0, first.shape[3]), dtype=dtype) for name in past_names}
    ids, out, n_past = list(prompt_ids), [], 0
    for _ in range(n):
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64), **past}
        if "attention_mask" in inputs:
            feeds["attention_mask"] = np.ones((1, n_past + len(ids)), dtype=np.int64)
        if "position_ids" in inputs:
            feeds["position_ids"] = np.arange(n_past, n_past + len(ids), dtype=np.int64)[None, :]
        results = sess.run(["logits", *present_names], feeds)
        n_past += len(ids)
        past = dict(zip(past_names, results[1:]))
        token = int(np.argmax(results[0][0, -1]))
        out.append(token)
        ids = [token]
    return out


def config_op_types(path: Path) -> set[tuple[str, str]]:
    """(domain, op type) listed in a required-operators config, parsed here (not by onnxruntime's parser)."""
    ops = set()
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith(("#", "!")):
            continue
        domain, _opsets, rest = line.split(";", 2)
        depth, names = 0, [""]
        for ch in rest:  # drop the per-operator type JSON ({...} after a name); commas at depth 0 separate ops
            depth += (ch == "{") - (ch == "}")
            if depth == 0 and ch == ",":
                names.append("")
            elif depth == 0 and ch != "}":
                names[-1] += ch
        ops |= {(domain, name.strip()) for name in names if name.strip()}
    return ops


def graph_op_types(model_path: Path) -> set[tuple[str, str]]:
    """(domain, op type) of every node of an ONNX model, subgraphs included, read with the onnx package."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    found = set()

    def walk(graph):
        for node in graph.node:
            found.add((node.domain or "ai.onnx", node.op_type))
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found


def optimized_like_converter(model: Path, dest: Path, *, arm: bool) -> Path:
    """The .onnx optimised with the settings onnxruntime's ORT converter uses (level all, no NCHWc, QDQ int8 on
    arm), saved as ONNX so the onnx package can read the graph the .ort holds."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(dest)
    opts.add_session_config_entry("session.qdqisint8allowed", "1" if arm else "0")
    opts.log_severity_level = 3
    ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"],
                         disabled_optimizers=["NchwcTransformer"])
    return dest
