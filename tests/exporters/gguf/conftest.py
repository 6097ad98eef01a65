"""Fixtures for the GGUF export tests: SmolLM2 exports shared by the session, a tiny Qwen2 with its own tokenizer.

The SmolLM2 exports run in this process, so the transformers reference of the
gate is computed once (edgekit caches the last reference by weights, config,
prompts and token ids) and every quantization reuses it. The tiny model of each
architecture (``tiny_arch``) is shared with the fused ONNX tests: tests/exporters/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.exporters.gguf.models import make_tiny


class GgufStore:
    """``gguf_exports("q4_k_m")`` -> the Artifact of packaged SmolLM2 exported at that quantization (once)."""

    def __init__(self, root: Path, source: Path):
        self.root, self.source = root, source
        self.done: dict[str, object] = {}

    def __call__(self, quant: str):
        if quant not in self.done:
            from edgekit.exporters.gguf import export_gguf

            self.done[quant] = export_gguf(self.source, self.root / quant, quant=quant)
        return self.done[quant]


@pytest.fixture(scope="session")
def gguf_exports(tmp_path_factory, smollm2_hf) -> GgufStore:
    return GgufStore(tmp_path_factory.mktemp("gguf"), smollm2_hf)


@pytest.fixture(scope="session")
def tiny_qwen2_qwentok(tmp_path_factory) -> Path:
    """A tiny random Qwen2 whose tokenizer uses Qwen2's own split regex and NFC (llama.cpp pre 'qwen2')."""
    return make_tiny(tmp_path_factory.mktemp("tiny") / "qwen2-qwentok", "qwen2", qwen2_tokenizer=True)
