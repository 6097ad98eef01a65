"""The protobuf wire format, and the few ONNX messages edgekit reads and writes without the ``onnx`` package.

The profiler reads an ONNX model's graph (initializers with their dims and data
type, nodes with their operators, graph inputs with their element types) from a
memory map, never copying the weights; :func:`edgekit.artifact.resolve_artifact`
reads a bare ``.onnx`` file's input names and output ranks the same way to tell
its task without onnxruntime; ``targets detect`` writes one-node models
for its microbenchmarks. All need a handful of fields, not the ``onnx`` package
(an export-side dependency). Field numbers are those of ``onnx/onnx.proto``:

* ModelProto: ir_version 1, graph 7, opset_import 8
* GraphProto: node 1, name 2, initializer 5, input 11, output 12
* NodeProto: input 1, output 2, op_type 4, attribute 5 (AttributeProto: name 1, i 3, type 20)
* TensorProto: dims 1, data_type 2, name 8, raw_data 9
* ValueInfoProto: name 1, type 2 (TypeProto.tensor_type 1: elem_type 1, shape 2 of dim 1 of dim_value 1)

Reading raises ``ValueError`` on bytes that are not such a message, after at most one
pass over the buffer: every length is checked against the bytes left before it is
followed, and a varint is at most ten bytes. Callers translate it into their own errors.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

# bytes per element of an ONNX TensorProto.DataType (int4/uint4: half a byte)
ONNX_ELEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 21: 0.5, 22: 0.5}
FLOAT, UINT8, INT8, INT32, INT64 = 1, 2, 3, 6, 7


# ---- wire format: reading ----------------------------------------------------------------

def read_varint(buf, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; ``ValueError`` when truncated or over ten bytes."""
    result = shift = 0
    for pos in range(pos, min(pos + 10, len(buf))):
        b = buf[pos]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + 1
        shift += 7
    raise ValueError(f"truncated or overlong varint at byte {pos}")


def fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """Yield (field number, wire type, value) where a length-delimited value is its (start, end) span."""
    pos = start
    if end > len(buf):
        raise ValueError(f"a message of {end - start} bytes runs past the end of the data ({len(buf)} bytes)")
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value = (pos, pos + length)
            pos += length
        elif wire == 1:
            value, pos = pos, pos + 8
        elif wire == 5:
            value, pos = pos, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError(f"field {number} runs past the end of its message (byte {end})")
        yield number, wire, value


def span(value) -> tuple[int, int]:
    """A length-delimited field's (start, end); ``ValueError`` when the field was written with another wire type."""
    if not isinstance(value, tuple):
        raise ValueError("a scalar field where a string or message belongs")
    return value


def scalar(wire: int, value) -> int:
    """A varint field's value; ``ValueError`` when the field was written with another wire type."""
    if wire != 0:
        raise ValueError(f"wire type {wire} where a varint number belongs")
    return value


def text(buf, value) -> str:
    start, end = span(value)
    return bytes(buf[start:end]).decode("utf-8", "replace")


def packed_or_single(buf, wire: int, value) -> list[int]:
    """A repeated varint field's values: one unpacked element, or a packed run."""
    if wire == 0:
        return [value]
    (pos, end), out = span(value), []
    while pos < end:
        v, pos = read_varint(buf, pos)
        out.append(v)
    if pos > end:
        raise ValueError("a packed field runs past its end")
    return out


# ---- wire format: writing ------------------------------------------------------------------

def varint(n: int) -> bytes:
    """``n`` as a varint; a negative int64 as its 64-bit two's complement (ten bytes), as protobuf does."""
    if n < 0:
        n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: int | bytes | str) -> bytes:
    """One field: an int as a varint, bytes or str length-delimited."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return varint((number << 3) | 2) + varint(len(data)) + data


# ---- ONNX: reading ---------------------------------------------------------------------

class Tensor(NamedTuple):
    name: str
    dims: list[int]
    data_type: int

    @property
    def nbytes(self) -> int:
        """Size of the data, whatever its storage (raw, typed or external); unknown types count 4 bytes."""
        numel = 1
        for d in self.dims:
            numel *= d
        return numel * int(ONNX_ELEM_BYTES.get(self.data_type, 4) * 8) // 8  # in integers: dims may be huge


class Node(NamedTuple):
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, int]  # the integer attributes only


class Graph(NamedTuple):
    initializers: list[Tensor]
    nodes: list[Node]
    inputs: list[tuple[str, int | None]]  # (name, tensor element type or None)


def _tensor(buf, where) -> Tensor:
    name, dims, dtype = "", [], 1
    for number, wire, value in fields(buf, *where):
        if number == 1:
            dims.extend(packed_or_single(buf, wire, value))
        elif number == 2:
            dtype = scalar(wire, value)
        elif number == 8:
            name = text(buf, value)
    if any(d >= 1 << 63 for d in dims):
        raise ValueError(f"tensor {name!r} has a negative dimension")
    return Tensor(name, dims, dtype)


def _node(buf, where) -> Node:
    op, inputs, outputs, attrs = "", [], [], {}
    for number, _wire, value in fields(buf, *where):
        if number == 1:
            inputs.append(text(buf, value))
        elif number == 2:
            outputs.append(text(buf, value))
        elif number == 4:
            op = text(buf, value)
        elif number == 5:
            aname, ival = "", None
            for n2, w2, v2 in fields(buf, *span(value)):
                if n2 == 1:
                    aname = text(buf, v2)
                elif n2 == 3 and w2 == 0:
                    ival = v2 - (1 << 64) if v2 >= 1 << 63 else v2  # int64
            if ival is not None:
                attrs[aname] = ival
    return Node(op, inputs, outputs, attrs)


def _value_info_elem(buf, where) -> tuple[str, int | None]:
    name, elem = "", None
    for n2, _w2, v2 in fields(buf, *where):
        if n2 == 1:
            name = text(buf, v2)
        elif n2 == 2:
            for n3, _w3, v3 in fields(buf, *span(v2)):
                if n3 == 1:
                    elem = next((scalar(w4, v4) for n4, w4, v4 in fields(buf, *span(v3)) if n4 == 1), None)
    return name, elem


def read_onnx_graph(buf) -> Graph:
    """The main graph of a serialized ONNX ModelProto (bytes, or an mmap of the file)."""
    graph = next((v for n, w, v in fields(buf, 0, len(buf)) if n == 7 and w == 2), None)
    if graph is None:
        raise ValueError("no graph")
    inits, nodes, inputs = [], [], []
    for number, wire, value in fields(buf, *graph):
        if wire != 2:
            continue
        if number == 5:
            inits.append(_tensor(buf, value))
        elif number == 1:
            nodes.append(_node(buf, value))
        elif number == 11:
            inputs.append(_value_info_elem(buf, value))
    return Graph(inits, nodes, inputs)


def _value_info_rank(buf, where) -> tuple[str, int | None]:
    """A ValueInfoProto's name and its tensor's rank (the number of dims, fixed or named; None when unstated)."""
    name, rank = "", None
    for n2, w2, v2 in fields(buf, *where):
        if n2 == 1:
            name = text(buf, v2)
        elif n2 == 2 and w2 == 2:
            for n3, w3, v3 in fields(buf, *span(v2)):  # TypeProto.tensor_type
                if n3 == 1 and w3 == 2:
                    for n4, w4, v4 in fields(buf, *span(v3)):  # TypeProto.Tensor.shape
                        if n4 == 2 and w4 == 2:
                            rank = sum(1 for n5, _w5, _v5 in fields(buf, *span(v4)) if n5 == 1)
    return name, rank


def read_onnx_io(buf) -> tuple[list[str], dict[str, int | None]]:
    """The main graph's input names, and its outputs' ranks by name, of a serialized ONNX ModelProto."""
    graph = next((v for n, w, v in fields(buf, 0, len(buf)) if n == 7 and w == 2), None)
    if graph is None:
        raise ValueError("no graph")
    inputs, outputs = [], {}
    for number, wire, value in fields(buf, *graph):
        if wire == 2 and number == 11:
            inputs.append(_value_info_rank(buf, value)[0])
        elif wire == 2 and number == 12:
            name, rank = _value_info_rank(buf, value)
            outputs[name] = rank
    return inputs, outputs


# ---- ONNX: writing ---------------------------------------------------------------------

def value_info(name: str, elem_type: int, dims: Sequence[int]) -> bytes:
    """A ValueInfoProto of a tensor with a fixed shape."""
    shape = b"".join(field(1, field(1, d)) for d in dims)  # TensorShapeProto.dim{dim_value}
    tensor_type = field(1, elem_type) + field(2, shape)  # TypeProto.Tensor{elem_type, shape}
    return field(1, name) + field(2, field(1, tensor_type))  # ValueInfoProto{name, type{tensor_type}}


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], **int_attrs: int) -> bytes:
    """A NodeProto (default domain) with integer attributes."""
    attrs = b"".join(field(5, field(1, k) + field(3, v) + field(20, 2)) for k, v in int_attrs.items())  # type INT
    return (b"".join(field(1, i) for i in inputs) + b"".join(field(2, o) for o in outputs) + field(4, op_type)
            + attrs)


def tensor(name: str, data_type: int, dims: Sequence[int], raw: bytes) -> bytes:
    """A TensorProto holding ``raw`` (little-endian) bytes."""
    return b"".join(field(1, d) for d in dims) + field(2, data_type) + field(8, name) + field(9, raw)


def onnx_model(
    nodes: Sequence[bytes], inputs: Sequence[bytes], outputs: Sequence[bytes], initializers: Sequence[bytes] = (),
    *, name: str = "edgekit", opset: int = 13, ir_version: int = 8,
) -> bytes:
    """A serialized ModelProto of one graph, from parts made by :func:`node`, :func:`value_info`, :func:`tensor`."""
    graph = (b"".join(field(1, n) for n in nodes) + field(2, name) + b"".join(field(5, t) for t in initializers)
             + b"".join(field(11, i) for i in inputs) + b"".join(field(12, o) for o in outputs))
    return field(1, ir_version) + field(7, graph) + field(8, field(1, "") + field(2, opset))


def matmul_model(op: str, a_type: int, b_type: int, y_type: int, n: int, m: int | None = None) -> bytes:
    """A serialized ONNX ModelProto with one ``op`` node: Y = A @ B, A m x n, B n x n (opset 13; m defaults to n)."""
    m = n if m is None else m
    return onnx_model(
        [node(op, ["A", "B"], ["Y"])], [value_info("A", a_type, (m, n)), value_info("B", b_type, (n, n))],
        [value_info("Y", y_type, (m, n))], name="microbench",
    )
