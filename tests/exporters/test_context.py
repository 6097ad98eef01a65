"""One export context per export: config.json, the family row, the safetensors headers and the tokenizer are
each read once in a whole export (gate included), whichever exporter makes it."""

from __future__ import annotations

import collections
import pathlib

import pytest

import edgekit.fileio as fileio
import edgekit.safetensors_io as safetensors_io
import edgekit.sources as sources
from edgekit.exporters import context as context_mod
from edgekit.runtimes import tokenizer as tokenizer_mod

LOOSE = {"kl_mean": 100.0, "kl_max": 1000.0, "top1": 0.0}  # a tiny random model: the counts are the point


@pytest.fixture
def reads(monkeypatch):
    """Counts of config.json reads (any reader edgekit uses), family resolutions, safetensors header reads and
    tokenizer builds."""
    counts: collections.Counter = collections.Counter()

    def counting(key, fn, when=lambda *a, **k: True):
        def wrapper(*a, **k):
            if when(*a, **k):
                counts[key] += 1
            return fn(*a, **k)
        return wrapper

    is_config = lambda path, *a, **k: pathlib.Path(path).name == "config.json"  # noqa: E731
    monkeypatch.setattr(fileio, "read_json", counting("config", fileio.read_json, is_config))
    monkeypatch.setattr(pathlib.Path, "read_text", counting("config", pathlib.Path.read_text, is_config))
    monkeypatch.setattr(pathlib.Path, "read_bytes", counting("config", pathlib.Path.read_bytes, is_config))
    monkeypatch.setattr(safetensors_io, "_header_length", counting("header", safetensors_io._header_length))
    from edgekit import families
    from edgekit.exporters.gguf import convert
    from edgekit.exporters.onnx_fused import specs

    family_for = counting("family", families.family_for)
    for module in (families, convert, specs):
        monkeypatch.setattr(module, "family_for", family_for, raising=False)
    monkeypatch.setattr(tokenizer_mod.HFTokenizer, "__init__", counting("tokenizer", tokenizer_mod.HFTokenizer.__init__))
    assert sources and context_mod  # the readers the exporters reach through these
    return counts


def test_a_fused_int4_export_reads_everything_once(tiny_llama, tmp_path, reads):
    from edgekit.exporters.onnx import export_onnx

    art = export_onnx(tiny_llama, tmp_path / "out", quant="int4", thresholds=LOOSE)
    assert art.manifest.graph_rewrites == ["fused-decoder/v1"] and art.manifest.gate.status == "passed"
    # before the context: config 3, family 3, headers 4 (per file), tokenizer 3
    assert dict(reads) == {"config": 1, "family": 1, "header": 1, "tokenizer": 1}


def test_a_gguf_export_reads_everything_once(tiny_llama, tmp_path, reads):
    import llama_cpp  # noqa: F401 (the library must be there: no skip)
    from edgekit.exporters.gguf import export_gguf

    art = export_gguf(tiny_llama, tmp_path / "out", quant="q8_0", thresholds=LOOSE)
    assert art.manifest.gate.status == "passed" and [g.precision for g in art.manifest.stage_gates] == ["f16"]
    # before the context: config 3, family 2, headers 4; the tokenizer is read by the vocabulary check alone
    assert dict(reads) == {"config": 1, "family": 1, "header": 1}
