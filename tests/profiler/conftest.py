"""Fixtures for the profiler tests: the host's profile, tiny artifacts, editable target profiles.

No test here asserts a timing: the machine is shared, and how fast a run goes depends on what
else it is running. Tests check counts, orderings, schemas and the prediction's arithmetic;
accuracy against measurements is benchmarks/predict_accuracy.py's job.
"""

from __future__ import annotations

from pathlib import Path

import pytest

P_TOKENS, G_TOKENS = 128, 40


@pytest.fixture(scope="session")
def host_profile():
    """This host's profile, detected once per session (its numbers are only inputs, never asserted)."""
    from edgekit.targets.detect import detect

    return detect()


@pytest.fixture(scope="session")
def onnx_decoder(onnx_artifact) -> Path:
    """SmolLM2 as an int8 ONNX artifact (block-wise MatMulNBits), exported once per session."""
    return onnx_artifact("smollm2-int8").path


@pytest.fixture(scope="session")
def tiny_gguf_artifact(tmp_path_factory, tiny_llama) -> Path:
    """A GGUF artifact folder (manifest, gate) of the tiny random llama: seconds to make."""
    from edgekit.exporters.gguf import export_gguf

    return export_gguf(tiny_llama, tmp_path_factory.mktemp("prof-gguf") / "tiny-q8_0", quant="q8_0").path


@pytest.fixture(scope="session")
def tiny_onnx_artifact(tmp_path_factory, tiny_llama) -> Path:
    from edgekit.exporters.onnx import export_onnx

    return export_onnx(tiny_llama, tmp_path_factory.mktemp("prof-onnx") / "tiny-fp32").path
