"""The hand-written protobuf reader and writer agree with the ``onnx`` package and run in onnxruntime (fast)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit import protobuf as pb


def _tiny_model() -> tuple[bytes, np.ndarray, np.ndarray]:
    """ids -> Gather(E) -> MatMul(W) -> Softmax(axis=-1): two initializers, three ops, a negative attribute."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((10, 4)).astype(np.float32)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    model = pb.onnx_model(
        nodes=[pb.node("Gather", ["E", "ids"], ["h"]), pb.node("MatMul", ["h", "W"], ["y"]),
               pb.node("Softmax", ["y"], ["probs"], axis=-1)],
        inputs=[pb.value_info("ids", pb.INT64, (2,))],
        outputs=[pb.value_info("probs", pb.FLOAT, (2, 3))],
        initializers=[pb.tensor("E", pb.FLOAT, emb.shape, emb.tobytes()),
                      pb.tensor("W", pb.FLOAT, w.shape, w.tobytes())],
        name="tiny",
    )
    return model, emb, w


def _same_graph(ours: pb.Graph, ref: onnx.ModelProto) -> None:
    g = ref.graph
    assert [(t.name, t.dims, t.data_type) for t in ours.initializers] == [
        (t.name, list(t.dims), t.data_type) for t in g.initializer]
    assert [t.nbytes for t in ours.initializers] == [numpy_helper.to_array(t).nbytes for t in g.initializer]
    assert [(n.op_type, n.inputs, n.outputs) for n in ours.nodes] == [
        (n.op_type, list(n.input), list(n.output)) for n in g.node]
    assert [n.attrs for n in ours.nodes] == [
        {a.name: a.i for a in n.attribute if a.type == onnx.AttributeProto.INT} for n in g.node]
    assert ours.inputs == [(i.name, i.type.tensor_type.elem_type) for i in g.input]


def test_written_model_reads_back_like_onnx_load_and_runs():
    data, emb, w = _tiny_model()
    ref = onnx.load_from_string(data)
    onnx.checker.check_model(ref, full_check=True)  # a valid model, shapes inferred consistently
    ours = pb.read_onnx_graph(data)
    _same_graph(ours, ref)
    assert ours.nodes[2].attrs == {"axis": -1}  # int64 attributes keep their sign through the round trip
    assert [t.name for t in ours.initializers] == ["E", "W"] and ours.initializers[0].dims == [10, 4]

    import onnxruntime as ort
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ids = np.array([3, 7], dtype=np.int64)
    (probs,) = sess.run(None, {"ids": ids})
    logits = emb[ids] @ w
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(-1, keepdims=True), rtol=1e-5)


def test_reader_sees_what_onnx_writes():
    """A model serialized by the onnx package (packed dims, typed and raw storage, int8/fp16 types, attributes)."""
    big = numpy_helper.from_array(np.zeros((64, 32), dtype=np.float16), "big")
    q = numpy_helper.from_array(np.arange(24, dtype=np.int8).reshape(2, 3, 4), "q")
    typed = helper.make_tensor("typed", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0])  # float_data, not raw_data
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "big_t"], ["y"], transB=1, alpha=0.5),
         helper.make_node("Transpose", ["big"], ["big_t"], perm=[1, 0])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 64]),
         helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT16, [1, 2, None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 32])],
        [big, q, typed],
    )
    data = helper.make_model(graph).SerializeToString()
    ours = pb.read_onnx_graph(data)
    _same_graph(ours, onnx.load_from_string(data))
    assert ours.nodes[0].attrs == {"transB": 1}  # float attributes are not integer attributes
    assert dict(ours.inputs)["past_key_values.0.key"] == TensorProto.FLOAT16


def test_matmul_microbench_model_is_valid_onnx():
    data = pb.matmul_model("MatMulInteger", pb.UINT8, pb.INT8, pb.INT32, 16, 4)
    ref = onnx.load_from_string(data)
    onnx.checker.check_model(ref, full_check=True)
    assert [i.name for i in ref.graph.input] == ["A", "B"] and ref.opset_import[0].version == 13
    _same_graph(pb.read_onnx_graph(data), ref)


@pytest.mark.parametrize("garbage", [b"", b"\x0f\x01", b"\x3a\x10abc", b"\x3a\x02\x0a\x7f"])
def test_garbage_is_a_value_or_index_error(garbage):
    with pytest.raises((ValueError, IndexError)):
        pb.read_onnx_graph(garbage)


def test_varint_round_trip_including_negative_int64():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        assert pb.read_varint(pb.varint(n), 0) == (n, len(pb.varint(n)))
    assert len(pb.varint(-1)) == 10 and pb.read_varint(pb.varint(-1), 0)[0] == 2**64 - 1


def test_io_reader_names_inputs_and_ranks_outputs_and_tells_a_bare_files_task(tmp_path):
    """What ``resolve_artifact`` reads of a bare .onnx file, without onnxruntime: dims fixed, named or unknown."""
    from edgekit.artifact import bare_onnx_task
    from edgekit.errors import ArtifactError

    def model(inputs, outputs) -> bytes:
        vi = [[helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in side] for side in (inputs, outputs)]
        return helper.make_model(helper.make_graph([], "g", *vi)).SerializeToString()

    cases = {
        "text-generation": model([("input_ids", ["b", "s"]), ("past_key_values.0.key", [1, 2, None, 8])],
                                 [("logits", ["b", "s", 10]), ("present.0.key", None)]),
        "text-classification": model([("input_ids", ["b", "s"])], [("logits", ["b", 2])]),
        "feature-extraction": model([("input_ids", ["b", "s"])], [("last_hidden_state", ["b", "s", 8])]),
    }
    assert pb.read_onnx_io(cases["text-generation"]) == (["input_ids", "past_key_values.0.key"],
                                                        {"logits": 3, "present.0.key": None})
    for task, data in cases.items():
        ref = onnx.load_from_string(data).graph
        inputs, outputs = pb.read_onnx_io(data)
        assert inputs == [i.name for i in ref.input]
        assert outputs == {o.name: len(o.type.tensor_type.shape.dim) if o.type.tensor_type.HasField("shape") else None
                           for o in ref.output}
        (tmp_path / f"{task}.onnx").write_bytes(data)
        assert bare_onnx_task(tmp_path / f"{task}.onnx") == task
    for garbage in (b"", b"\x3a\x10abc", cases["text-generation"][:40]):
        (tmp_path / "bad.onnx").write_bytes(garbage)
        with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
            bare_onnx_task(tmp_path / "bad.onnx")
