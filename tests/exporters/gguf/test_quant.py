"""llama.cpp quantization of the SmolLM2 GGUF: file sizes, tensor types, default gates; a damaged file fails."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader

from edgekit.errors import QualityGateError
from edgekit.exporters.gguf import export_gguf
from edgekit.manifest import read_manifest, verify_files

# expected size relative to the f16 file, and the main tensor type llama.cpp uses
EXPECTED = {"q8_0": ((0.50, 0.58), "Q8_0"), "q4_k_m": ((0.33, 0.45), "Q5_0"), "q4_0": ((0.28, 0.38), "Q4_0")}


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m", "q4_0"])
def test_quantized_sizes_and_default_gates(quant, gguf_exports):
    f16 = gguf_exports("f16")
    art = gguf_exports(quant)
    m = art.manifest
    assert m.precision == quant and m.quantization.method == "llama.cpp"
    assert m.quantization.params["ftype"] == quant.upper() and m.quantization.params["intermediate"] == "f16"
    assert m.gate.status == "passed" and m.gate.precision == quant and not m.gate.failures
    assert [g.precision for g in m.stage_gates] == ["f16"] and m.stage_gates[0].status == "passed"
    (low, high), main_type = EXPECTED[quant]
    ratio = art.model_path.stat().st_size / f16.model_path.stat().st_size
    assert low <= ratio <= high, ratio
    reader = GGUFReader(str(art.model_path))
    types = [t.tensor_type.name for t in reader.tensors if len(t.shape) == 2]
    assert max(set(types), key=types.count) == main_type, types
    if quant == "q4_k_m":  # 576-wide rows cannot hold 256-wide k-blocks: llama.cpp falls back (q5_0 / q8_0)
        assert m.quantization.params["fallback_tensors"] > 0
    assert int(reader.fields["general.file_type"].contents()) == m.quantization.params["llama_ftype"]
    verify_files(art.path, read_manifest(art.path))


@pytest.mark.slow
def test_quantized_sizes_are_ordered(gguf_exports):
    sizes = [gguf_exports(q).model_path.stat().st_size for q in ("f16", "q8_0", "q4_k_m", "q4_0")]
    assert sizes == sorted(sizes, reverse=True)


def _zero(tensor_name):
    def edit(path):
        reader = GGUFReader(str(path), "r+")
        tensor = next(t for t in reader.tensors if t.name == tensor_name)
        tensor.data[...] = 0
        reader.data.flush()

    return edit


def test_damaged_conversion_fails_the_f16_gate_and_leaves_nothing(tiny_llama, tmp_path):
    with pytest.raises(QualityGateError) as info:
        export_gguf(tiny_llama, tmp_path / "out", quant="q8_0", postprocess=_zero("blk.0.ffn_down.weight"))
    report = info.value.report
    assert report.precision == "f16" and report.status == "failed" and report.metrics["kl_mean"] > 1e-2
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_threshold_override_and_no_gate(tiny_llama, tmp_path):
    with pytest.raises(QualityGateError) as info:  # an impossible bound fails an honest export
        export_gguf(tiny_llama, tmp_path / "strict", quant="q8_0", thresholds={"kl_mean": 0.0})
    assert info.value.report.precision == "q8_0" and "kl_mean" in info.value.report.failures[0]
    assert not (tmp_path / "strict").exists()
    art = export_gguf(tiny_llama, tmp_path / "nogate", quant="q4_0", run_gate=False)
    assert art.manifest.gate.status == "skipped" and art.manifest.stage_gates == []
    assert art.model_path.is_file() and np.isfinite(art.size_bytes)
