from __future__ import annotations

import pytest

import edgekit


@pytest.fixture(scope="session")
def smol_onnx(onnx_artifact):
    model = edgekit.load(onnx_artifact("smollm2-fp32").path, threads=2)
    yield model
    model.close()


@pytest.fixture(scope="session")
def smol_gguf(smollm2_gguf):
    model = edgekit.load(smollm2_gguf, threads=2, context=2048)
    yield model
    model.close()


# ---- tiny artifacts for the hardening tests (seconds to build, shared by the session) ----------------
@pytest.fixture(scope="session")
def tiny_gguf(tiny_llama, tmp_path_factory):
    """The tiny random llama as a GGUF artifact folder: f16 matrices, F32 norm weights. (With q8_0
    matrices llama.cpp quantizes activations to 8 bits first, which turns a NaN into some
    finite garbage: f16 keeps it NaN, as the norms of the packaged SmolLM2 Q4_1 do.)"""
    from edgekit.exporters.gguf import export_gguf

    return export_gguf(tiny_llama, tmp_path_factory.mktemp("hard") / "tiny-gguf", quant="f16")


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bert_classifier, tmp_path_factory):
    from edgekit.exporters.onnx import export_onnx

    return export_onnx(tiny_bert_classifier, tmp_path_factory.mktemp("hard") / "tiny-cls")
