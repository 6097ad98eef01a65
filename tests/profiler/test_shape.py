"""Per-token cost facts read from the model files, checked against independent readers (gguf-py, onnx)."""

from __future__ import annotations

import pytest

from edgekit.errors import ArtifactError, ConfigError
from edgekit.profiler.shape import artifact_shape, parse_params, shape_from_params


def test_gguf_shape_matches_gguf_py(smollm2_gguf):
    from gguf import GGUFReader

    reader = GGUFReader(str(smollm2_gguf))
    total = sum(int(t.n_bytes) for t in reader.tensors)
    names = {t.name for t in reader.tensors}
    shape = artifact_shape(smollm2_gguf)
    assert "output.weight" not in names  # SmolLM2 ties its embeddings: the table is read in full for the logits
    assert shape.streamed_bytes == total and shape.gathered_bytes == 0
    assert shape.n_params == sum(int(t.n_elements) for t in reader.tensors)
    assert (shape.n_layers, shape.n_kv_heads, shape.head_dim) == (30, 3, 64)
    assert shape.kv_bytes_per_position == 2 * 30 * 3 * 64 * 2  # K and V, f16
    assert shape.backend == "llama.cpp" and shape.quant == "q4_1"
    assert shape.weight_bytes == smollm2_gguf.stat().st_size


def _onnx_reference(path):
    """Initializer bytes and the names only Gather consumes, by the onnx package."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    sizes = {}
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        sizes[t.name] = n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    users: dict[str, set] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in sizes:
                users.setdefault(name, set()).add(node.op_type if not (node.op_type == "Gather" and i) else "idx")
    gathered = {n for n, ops in users.items() if ops == {"Gather"}}
    return sizes, gathered


@pytest.mark.slow
def test_onnx_encoder_shape_matches_the_onnx_package(onnx_artifact):
    art = onnx_artifact("minilm-fp32")
    sizes, gathered = _onnx_reference(art.path / "model.onnx")
    shape = artifact_shape(art.path)
    assert shape.gathered_bytes == sum(sizes[n] for n in gathered) > 0  # word, position, token-type tables
    assert shape.streamed_bytes - sum(sizes[n] for n in sizes if n not in gathered) < sum(sizes[n] for n in gathered) / 100
    assert shape.kind == "encoder" and shape.kv_bytes_per_position is None


@pytest.mark.slow
def test_onnx_decoder_shape_separates_the_gathered_embedding(onnx_decoder):
    sizes, gathered = _onnx_reference(onnx_decoder / "model.onnx")
    shape = artifact_shape(onnx_decoder)
    # the exporter stores the tied output layer as its own quantized weight, so the fp32
    # embedding only feeds Gather: one row per token, not the whole table
    assert gathered == {"model.embed_tokens.weight"}
    assert shape.gathered_bytes == sizes["model.embed_tokens.weight"] == 49152 * 576 * 4
    row = 576 * 4  # the one embedding row a token looks up
    assert shape.streamed_bytes == sum(v for k, v in sizes.items() if k not in gathered) + row
    assert shape.flops_per_token == 2 * (134_515_008 - 61 * 576)  # every matrix once; the 61 norms are vectors
    assert shape.kv_bytes_per_position == 2 * 30 * 3 * 64 * 4  # fp32 KV inputs


def test_shape_from_params_and_bits_per_weight():
    s = shape_from_params(parse_params("3.21B"), "q4_k_m", layers=28, kv_heads=8, head_dim=128, context=4096)
    assert s.weight_bytes == int(3.21e9 * 4.90 / 8) and s.backend == "llama.cpp"
    assert s.kv_bytes(4096) == 2 * 28 * 8 * 128 * 2 * 4096
    assert shape_from_params(10**9, "int4").backend == "onnx"
    assert shape_from_params(10**9, "int8-dynamic").compute == "int8"
    assert shape_from_params(10**9, "q8_0").compute == "quant"  # llama.cpp's quantized kernels (roofline.kernel_gops)
    assert shape_from_params(10**9, "f16").compute == shape_from_params(10**9, "int4").compute == "fp32"
    u = shape_from_params(8 * 10**9, "q4_k_m", untied_embedding_params=5 * 10**8)
    assert u.streamed_bytes == u.weight_bytes - int(5e8 * 4.90 / 8)
    assert [parse_params(x) for x in ("135M", "7e9", "1.5b", 2_000_000)] == [135_000_000, 7 * 10**9, 1_500_000_000,
                                                                             2_000_000]


@pytest.mark.parametrize("bad", ["three", "3.2X", "-1B", "10"])
def test_bad_params(bad):
    with pytest.raises(ConfigError, match="^params=") as info:
        parse_params(bad)
    assert info.value.params == ("params",)


def test_bad_quant_and_shape_values():
    with pytest.raises(ConfigError, match="unknown quantization 'q9_z'.*q4_k_m"):
        shape_from_params(10**9, "q9_z")
    with pytest.raises(ConfigError, match="^layers must be an integer >= 1, got 0"):
        shape_from_params(10**9, "q4_0", layers=0)


def test_unreadable_model_files(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 20)
    with pytest.raises(ArtifactError, match="not a readable GGUF"):
        artifact_shape(junk)
    with pytest.raises(ArtifactError, match="does not exist"):
        artifact_shape(tmp_path / "missing.gguf")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ArtifactError, match="not an edgekit artifact"):
        artifact_shape(tmp_path / "folder")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ArtifactError, match="neither"):
        artifact_shape(text)
