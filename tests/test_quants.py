"""The quantization table (edgekit.quants) is the one list: the CLI, the exporters, the gate and the profiler read it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from edgekit import quality, quants
from edgekit.errors import ConfigError, SourceError
from edgekit.profiler.shape import quant_choices, shape_from_params

FAKE_GGUF = quants.Quant("q3_fake", "gguf", 3.4375, 3.9, "a test type", "MOSTLY_Q3_K_M")
FAKE_ONNX = quants.Quant("int3", "onnx", 3, 4.1, "a test precision")
FAKE_BOUNDS = {"kl_mean": 0.5, "kl_max": 5.0, "top1": 0.6}


@pytest.fixture
def fake_rows(monkeypatch):
    """The table with one more GGUF type and one more ONNX precision (bounds for the decoder gate only)."""
    monkeypatch.setattr(quants, "QUANTS", {**quants.QUANTS, FAKE_GGUF.name: FAKE_GGUF, FAKE_ONNX.name: FAKE_ONNX})
    monkeypatch.setitem(quality.DEFAULT_THRESHOLDS["decoder"], FAKE_GGUF.name, FAKE_BOUNDS)


def _cli(*args):
    from edgekit.cli import _register, app

    _register()
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def test_a_new_row_is_a_cli_choice(fake_rows, tmp_path):
    for group, name in (("gguf", "q3_fake"), ("onnx", "int3")):
        helped = _cli("export", group, "--help")
        assert helped.exit_code == 0 and f"|{name}" in helped.output, helped.output
    # accepted by the option; export_gguf then checks the source (after the gate found its bounds)
    run = _cli("export", "gguf", tmp_path / "nope", "-o", tmp_path / "out", "--quant", "q3_fake")
    assert isinstance(run.exception, SourceError) and "does not exist" in str(run.exception)
    assert "q3_fake" in quant_choices()


def test_without_the_row_the_cli_refuses_it(tmp_path):
    run = _cli("export", "gguf", tmp_path / "nope", "-o", tmp_path / "out", "--quant", "q3_fake")
    assert run.exit_code == 2 and "'q3_fake' is not one of" in run.output
    assert "q3_fake" not in _cli("export", "gguf", "--help").output


def test_a_new_row_gets_its_gate_bounds(fake_rows, monkeypatch, tmp_path):
    from edgekit.exporters.gguf import export_gguf

    assert quality.thresholds_for("decoder", "q3_fake") == FAKE_BOUNDS
    assert quality.thresholds_for("decoder", "q3_fake", {"kl_mean": 0.4})["kl_mean"] == 0.4
    assert "q3_fake" in quality.gated_precisions("decoder") and "int3" in quality.gated_precisions("encoder")
    assert quants.export_quant("gguf", "q3_fake").llama_ftype() == 12  # gguf.LlamaFileType.MOSTLY_Q3_K_M
    # a row without bounds is an error naming where they go, not the loosest bounds by accident
    with pytest.raises(ConfigError, match="int3 has no gate bounds for encoders.*DEFAULT_THRESHOLDS"):
        quality.thresholds_for("encoder", "int3")
    monkeypatch.delitem(quality.DEFAULT_THRESHOLDS["decoder"], "q3_fake")
    with pytest.raises(ConfigError, match="q3_fake has no gate bounds for decoders"):
        export_gguf(tmp_path / "nope", tmp_path / "out", quant="q3_fake")  # before any work


def test_every_exported_type_has_gate_bounds_and_every_bound_a_row():
    for kind in quality.KIND_METRICS:
        assert set(quality.DEFAULT_THRESHOLDS[kind]) == set(quality.gated_precisions(kind)), kind
        for bounds in quality.DEFAULT_THRESHOLDS[kind].values():
            assert set(bounds) == set(quality.KIND_METRICS[kind])


def test_profiler_bits_per_weight_are_the_tables():
    for q in quants.QUANTS.values():
        shape = shape_from_params(10**9, q.name)
        assert shape.weight_bytes == int(10**9 * q.bpw / 8), q.name
        assert shape.backend == ("llama.cpp" if q.format == "gguf" else "onnx")
        assert (shape.compute == "int8") == q.int8_compute
    assert quants.get("q4_k_m").bpw == 4.90 and quants.get("q4_k_m").bits == 4.5  # the mix vs its main type


def test_profiler_sees_a_new_row(fake_rows):
    assert shape_from_params(10**9, "q3_fake").weight_bytes == int(10**9 * 3.9 / 8)


def test_file_types_and_nominal_bits_agree_with_gguf_py():
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    # the llama_ftype values exports recorded before the table existed
    expected = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q4_k_m": 15, "q4_0": 2}
    assert {q.name: int(q.llama_ftype()) for q in quants.rows("gguf", export=True)} == expected
    for q in quants.rows("gguf"):
        if q.file_type:
            assert isinstance(q.llama_ftype(), LlamaFileType)
        main = q.name.upper()
        if main not in GGMLQuantizationType.__members__:
            main = main.rsplit("_", 1)[0]  # a mix (Q4_K_M): its main type
        if main in GGMLQuantizationType.__members__:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType[main]]
            assert q.bits == size * 8 / block, q.name
    with pytest.raises(ConfigError, match="not a llama.cpp file type"):
        quants.get("q4_k").llama_ftype()


def test_exporter_choices_and_errors():
    assert quants.choices("onnx") == ["none", "int8", "int4", "fp16"]
    assert quants.export_quant("onnx", "none").name == "fp32"
    with pytest.raises(ConfigError, match="unknown quantization 'int3': use one of none, int8, int4, fp16"):
        quants.export_quant("onnx", "int3")
    with pytest.raises(ConfigError, match="unknown GGUF quantization 'q9': use one of f32, f16, bf16"):
        quants.export_quant("gguf", "q9")
    with pytest.raises(ConfigError, match="unknown GGUF quantization 'q5_1'"):
        quants.export_quant("gguf", "q5_1")  # known to the profiler, not made by the exporter
    names = [q.name for q in quants.QUANTS.values()]
    assert len(names) == len(set(names)) and all(q.format in ("onnx", "gguf") for q in quants.QUANTS.values())


def test_onnx_export_takes_quant_and_the_cli_both_flags(tmp_path):
    from edgekit.exporters.onnx import export_onnx

    with pytest.raises(ConfigError, match="unknown quantization 'int3'"):
        export_onnx(tmp_path / "nope", tmp_path / "out", quant="int3")
    for flag in ("--quant", "--quantize", "-q"):
        run = _cli("export", "onnx", tmp_path / "nope", "-o", tmp_path / "out", flag, "int8")
        assert isinstance(run.exception, SourceError), (flag, run.output)


FAKE_NBITS = quants.Quant(
    "int8x", "onnx", 8, 9.5, "a test block-wise precision", scheme="matmul_nbits", encoder_scheme="float16",
    fused_plan={"default_bits": 8, "head_bits": 8, "embed_bits": 8, "block": 64},
    traced_bounds={"kl_mean": 0.3, "kl_max": 3.0, "top1": 0.7})


@pytest.fixture
def fake_onnx_row(monkeypatch):
    monkeypatch.setattr(quants, "QUANTS", {**quants.QUANTS, FAKE_NBITS.name: FAKE_NBITS})
    monkeypatch.setitem(quality.DEFAULT_THRESHOLDS["decoder"], FAKE_NBITS.name, FAKE_BOUNDS)


def test_a_new_onnx_row_is_dispatched_by_its_fields(fake_onnx_row, tiny_llama):
    """The ONNX exporters read a row's scheme, fused plan and traced bounds: no name is compared."""
    from edgekit.exporters.onnx import _traced_bounds, _use_fused
    from edgekit.exporters.onnx_fused.export import default_plan
    from edgekit.sources import resolve_source

    assert quants.export_quant("onnx", "int8x") is FAKE_NBITS and "int8x" in quants.choices("onnx")
    plan = default_plan("int8x")
    assert (plan.default_bits, plan.block, plan.head_bits) == (8, 64, 8)
    assert quants.onnx_scheme(FAKE_NBITS, decoder=True) == "matmul_nbits"
    assert quants.onnx_scheme(FAKE_NBITS, decoder=False) == "float16"
    assert quants.onnx_scheme(FAKE_NBITS, decoder=True, int8_mode="dynamic") == "float16"
    assert _traced_bounds("decoder", "int8x", {"top1": 0.5}) == {"kl_mean": 0.3, "kl_max": 3.0, "top1": 0.5}
    assert _traced_bounds("encoder", "int8x", None) is None
    src = resolve_source(tiny_llama)
    assert _use_fused(src, "text-generation", "auto", "int8x", None, True, "auto")
    # a row without a fused plan goes the traced way (auto) or is refused (fused), naming what the builder makes
    assert not _use_fused(src, "text-generation", "auto", "fp16", None, True, "auto")
    with pytest.raises(Exception, match="it makes fp32, int8, int4, int8x, not fp16") as info:
        _use_fused(src, "text-generation", "fused", "fp16", None, True, "auto")
    assert info.value.params == ("via",)
    with pytest.raises(ConfigError, match="makes fp32, int8, int4, int8x, not fp16") as info:
        default_plan("fp16")
    assert info.value.params == ("via",)


def test_a_new_onnx_row_reaches_the_quantizer(fake_onnx_row, tmp_path):
    """onnx_quant.quantize runs the pass the row's scheme names with the row's bits (a real MatMul model)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.exporters.onnx_quant import quantize

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                               helper.make_node("Relu", ["h"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    src = tmp_path / "m.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    tool, params = quantize(src, tmp_path / "q.onnx", "int8x", decoder=True)
    assert tool == "matmul_nbits" and params["bits"] == 8
    assert [n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node][0] == "MatMulNBits"
    tool, _ = quantize(src, tmp_path / "h.onnx", FAKE_NBITS, decoder=False)
    assert tool == "float16"
    with pytest.raises(ConfigError, match="unknown quantization 'int3'") as info:
        quantize(src, tmp_path / "x.onnx", "int3")
    assert info.value.params == ("quant",)


def test_user_fixable_export_options_are_config_errors_naming_the_parameter(tiny_llama, tmp_path):
    """A value the user passed that is wrong for this option is a ConfigError (exit 2) with ``param``; a failure
    while doing the work stays an ExportError."""
    from edgekit.exporters.gguf import export_gguf
    from edgekit.exporters.gguf.convert import convert
    from edgekit.exporters.gguf.quant import quantize
    from edgekit.exporters.onnx import export_onnx
    from edgekit.sources import resolve_source

    cases = [
        (lambda: quantize(tmp_path / "a.gguf", tmp_path / "b.gguf", "f16"), "f16 is written by the converter", "quant"),
        (lambda: convert(resolve_source(tiny_llama), tmp_path / "c.gguf", "q8_0"),
         "the converter writes f32, f16, bf16, not 'q8_0'", "quant"),
        (lambda: export_gguf(tiny_llama, tmp_path / "d", threads=0), "threads must be", "threads"),
        (lambda: export_onnx(tiny_llama, tmp_path / "e", int8_mode="fast"), "unknown int8 mode", "int8_mode"),
        (lambda: export_onnx(tiny_llama, tmp_path / "f", via="somehow"), "unknown export path", "via"),
        (lambda: quants.export_quant("gguf", "q9"), "unknown GGUF quantization", "quant"),
        (lambda: quants.get("q4_k").llama_ftype(), "not a llama.cpp file type", "quant"),
    ]
    for call, words, param in cases:
        with pytest.raises(ConfigError, match=words) as info:
            call()
        assert info.value.params == (param,), words
