"""A small ONNX graph writer whose weights go straight to the external data file.

Each initializer is appended to ``model.onnx.data`` the moment it is made and
only its name, shape and file offset stay in the ``ModelProto``, so building a
model holds one tensor in memory at a time (the weights are never all resident
at once, unlike ``onnx.save_model(..., save_as_external_data=True)`` on a model
built in memory). Offsets are page-aligned so onnxruntime can memory-map them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

_ALIGN = 4096
_INLINE_BYTES = 1024  # smaller tensors (shapes, scalars) stay inside model.onnx
MS = "com.microsoft"


class Graph:
    """Nodes, inputs, outputs and initializers of one ONNX graph being written."""

    def __init__(self, data_path: Path):
        import onnx

        self.onnx = onnx
        self.data_path = Path(data_path)
        self._fh = open(self.data_path, "wb")
        self._offset = 0
        self.nodes: list = []
        self.inputs: list = []
        self.outputs: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._consts: dict[tuple, str] = {}
        self.weight_bytes = 0

    # ------------------------------------------------------------ values
    def input(self, name: str, dtype, shape: Sequence) -> str:
        self.inputs.append(self.onnx.helper.make_tensor_value_info(name, _elem(dtype), list(shape)))
        return name

    def output(self, name: str, dtype, shape: Sequence) -> str:
        self.outputs.append(self.onnx.helper.make_tensor_value_info(name, _elem(dtype), None if shape is None else list(shape)))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        """An initializer; large ones are written to the data file now (the array can be freed after)."""
        if name in self._names:
            raise ValueError(f"duplicate initializer {name}")
        self._names.add(name)
        array = np.ascontiguousarray(array)
        t = self.onnx.TensorProto()
        t.name = name
        t.data_type = _elem(array.dtype)
        t.dims.extend(array.shape)
        if array.nbytes <= _INLINE_BYTES:
            t.raw_data = array.tobytes()
        else:
            pad = (-self._offset) % _ALIGN
            if pad:
                self._fh.write(b"\0" * pad)
                self._offset += pad
            self._fh.write(memoryview(array).cast("B"))
            t.data_location = self.onnx.TensorProto.EXTERNAL
            for key, value in (("location", self.data_path.name), ("offset", str(self._offset)),
                               ("length", str(array.nbytes))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            self._offset += array.nbytes
            self.weight_bytes += array.nbytes
        self.initializers.append(t)
        return name

    def const(self, values, dtype=np.int64) -> str:
        """A small constant initializer, shared by every node that asks for the same values."""
        arr = np.asarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.weight(f"const_{len(self._consts)}", arr)
        return self._consts[key]

    # ------------------------------------------------------------ nodes
    def op(self, op_type: str, inputs: Sequence[str], name: str, *, outputs: int | Sequence[str] = 1,
           domain: str = "", **attrs) -> list[str]:
        """Add a node named ``name``; returns its output names (``name/out0``... unless given)."""
        outs = [f"{name}/out{i}" for i in range(outputs)] if isinstance(outputs, int) else list(outputs)
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outs, name=name, domain=domain or None,
                                                     **attrs))
        return outs

    def one(self, op_type: str, inputs: Sequence[str], name: str, **kw) -> str:
        return self.op(op_type, inputs, name, **kw)[0]

    # ------------------------------------------------------------ finish
    def save(self, path: Path, *, producer: str, metadata: dict[str, str]) -> None:
        onnx = self.onnx
        self._fh.close()
        graph = onnx.helper.make_graph(self.nodes, "decoder", self.inputs, self.outputs, self.initializers)
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21),
                                                             onnx.helper.make_opsetid(MS, 1)],
                                       producer_name=producer)
        model.ir_version = 10
        for k, v in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        with open(path, "wb") as fh:
            fh.write(model.SerializeToString())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _elem(dtype) -> int:
    import onnx

    if isinstance(dtype, int):
        return dtype
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
