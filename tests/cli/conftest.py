"""Fixtures for the CLI tests: tiny artifacts of every kind, exported once per session (seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.builders import make_tiny_decoder


@pytest.fixture(scope="session")
def cli_artifacts(tmp_path_factory, tiny_llama, tiny_bert, tiny_bert_classifier):
    """``cli_artifacts("gguf")`` -> the folder of a tiny artifact: gguf (decoder, q8_0), onnx-decoder,
    onnx-encoder, onnx-classifier, gguf-no-template (a decoder whose tokenizer has no chat template)."""
    root = tmp_path_factory.mktemp("cli-artifacts")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            from edgekit.exporters.gguf import export_gguf
            from edgekit.exporters.onnx import export_onnx

            if name == "gguf":
                made[name] = export_gguf(tiny_llama, root / name, quant="q8_0").path
            elif name == "gguf-no-template":
                src = make_tiny_decoder(root / "src-no-template", "llama")
                config = json.loads((src / "tokenizer_config.json").read_text())
                del config["chat_template"]
                (src / "tokenizer_config.json").write_text(json.dumps(config))
                made[name] = export_gguf(src, root / name, quant="q8_0").path
            else:
                source = {"onnx-decoder": tiny_llama, "onnx-encoder": tiny_bert, "onnx-classifier": tiny_bert_classifier}
                made[name] = export_onnx(source[name], root / name).path
        return made[name]

    return get
