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
