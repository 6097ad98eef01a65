"""What one decoded token costs: bytes streamed from memory and arithmetic, from the artifact's weights.

Decoding one token reads every weight matrix once, except tables that are only
gathered by row (the input embedding, unless the output layer shares it), plus
the KV cache of the positions so far. The roofline needs exactly that number, so
this module reads the model files' tensor lists without loading the model:

* ONNX: a small protobuf walker lists the graph's initializers (their sizes,
  from dims and data type, inline or external) and which operators consume
  them; an initializer consumed only by ``Gather`` counts as gathered. This
  avoids the ``onnx`` package (an export-side dependency) and never copies the
  weights.
* GGUF: the header lists tensors with their ggml types (sizes from gguf-py's block table);
  ``token_embd`` is gathered when an ``output`` tensor exists (untied), else it
  is the output layer too.

``shape_from_params`` gives the same numbers before anyone downloads a model,
from a parameter count and the bits per weight of a GGUF type or ONNX precision.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from edgekit.errors import ArtifactError, ConfigError, MissingDependencyError

# Bits per weight. Pure block formats from their layout; llama.cpp's mixes (K-quants *_S/_M/_L)
# from the file sizes llama.cpp's own quantize tool lists for Llama-3-8B (tools/quantize/quantize.cpp,
# QUANT_OPTIONS: e.g. "Q4_K_M : 4.58G" over 8.03e9 parameters = 4.90 bpw).
GGUF_BPW = {
    "f32": 32.0, "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.5625, "q5_1": 6.0, "q5_0": 5.5, "q4_1": 5.0,
    "q4_0": 4.5, "iq4_nl": 4.5, "iq4_xs": 4.25, "q5_k_m": 5.70, "q5_k_s": 5.57, "q4_k_m": 4.90, "q4_k_s": 4.67,
    "q3_k_l": 4.31, "q3_k_m": 4.00, "q3_k_s": 3.65, "q2_k": 3.17, "iq3_m": 3.66, "iq3_xxs": 3.06, "iq2_xs": 2.31,
    "q5_k": 5.5, "q4_k": 4.5, "q3_k": 3.4375, "q2_k_s": 3.17,
}
# edgekit's ONNX exports (exporters/onnx_quant.py): MatMulNBits in blocks of 32 with an fp32 scale per block
# (int4 also a 4-bit zero point per block); quantize_dynamic int8 is 8 bits per channel-scaled weight.
ONNX_BPW = {"fp32": 32.0, "fp16": 16.0, "int8": 9.0, "int4": 5.125, "int8-dynamic": 8.0}
# Which peak bounds the arithmetic. Only onnxruntime's integer GEMMs (MatMulInteger, DynamicQuantizeMatMul: the
# quantize_dynamic int8 form) run at the int8 dot-product rate. llama.cpp's quantized kernels and MatMulNBits
# track the fp32 FMA rate: on the host, llama.cpp's Q4_1 prefill reaches about 0.6 of the fp32 peak but 0.1 of
# the int8 (VNNI) peak, and the int4/int8 MatMulNBits prefill is slower than fp32; the published Raspberry Pi 5
# and Haswell prefill rates are 0.5-0.7 of their fp32 peaks (presets' notes).
INT8_COMPUTE = {"int8-dynamic"}
_ONNX_ELEM = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2, 21: 0.5, 22: 0.5}


class ModelShape(BaseModel):
    """Per-token cost facts of one model (an artifact, or a parameter count and a quantization)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    origin: Literal["onnx", "gguf", "params"]
    backend: Literal["onnx", "llama.cpp"]
    quant: str = Field(description="GGUF type of most weights, or the ONNX precision")
    compute: Literal["fp32", "int8"] = Field(description="which peak bounds the matmuls: int8 only for integer GEMMs")
    kind: Literal["decoder", "encoder", "classifier"] = "decoder"
    n_params: int
    weight_bytes: int = Field(description="bytes of weights resident in memory")
    streamed_bytes: int = Field(description="weight bytes read for every decoded token")
    gathered_bytes: int = Field(0, description="tables only gathered by row (input embedding)")
    flops_per_token: int = Field(description="2 x multiply-adds of the weight matmuls for one token")
    output_flops: int = Field(0, description="the part of flops_per_token spent in the output (logits) layer")
    prefill_all_logits: bool = Field(False, description="the runtime computes logits for every prompt position")
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    kv_bytes_per_position: int | None = Field(None, description="K and V of all layers for one context position")
    context_length: int | None = None

    def decode_bytes(self, position: int) -> float:
        return self.streamed_bytes + (self.kv_bytes_per_position or 0) * position

    def decode_flops(self, position: int) -> float:
        attn = 4 * (self.n_layers or 0) * (self.n_heads or 0) * (self.head_dim or 0) * position
        return self.flops_per_token + attn

    def prefill_flops(self, tokens: int) -> float:
        """Arithmetic of a prompt of ``tokens`` tokens (attention over half the prompt on average).

        llama.cpp computes the logits of the last position only; an ONNX export computes them for all.
        """
        logits = tokens if self.prefill_all_logits else 1
        return tokens * (self.decode_flops(tokens // 2) - self.output_flops) + logits * self.output_flops

    def kv_bytes(self, positions: int) -> int:
        return (self.kv_bytes_per_position or 0) * positions


# ---- a minimal protobuf reader -----------------------------------------------------

def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """Yield (field number, wire type, value) where a length-delimited value is its (start, end) span."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = (pos, pos + length)
            pos += length
        elif wire == 1:
            value, pos = pos, pos + 8
        elif wire == 5:
            value, pos = pos, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _text(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _packed_or_single(buf, wire, value) -> list[int]:
    if wire == 0:
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        v, pos = _varint(buf, pos)
        out.append(v)
    return out


def _tensor(buf, span) -> tuple[str, list[int], int]:
    """(name, dims, byte size) of a TensorProto, whatever its storage (raw, typed, external)."""
    name, dims, dtype = "", [], 1
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            dims.extend(_packed_or_single(buf, wire, value))
        elif number == 2:
            dtype = value
        elif number == 8:
            name = _text(buf, value)
    numel = 1
    for d in dims:
        numel *= d
    return name, dims, int(numel * _ONNX_ELEM.get(dtype, 4))


def _node(buf, span) -> tuple[str, list[str], list[str], dict[str, int]]:
    op, inputs, outputs, attrs = "", [], [], {}
    for number, _wire, value in _fields(buf, *span):
        if number == 1:
            inputs.append(_text(buf, value))
        elif number == 2:
            outputs.append(_text(buf, value))
        elif number == 4:
            op = _text(buf, value)
        elif number == 5:
            aname, ival = "", None
            for n2, _w2, v2 in _fields(buf, *value):
                if n2 == 1:
                    aname = _text(buf, v2)
                elif n2 == 3:
                    ival = v2
            if ival is not None:
                attrs[aname] = ival
    return op, inputs, outputs, attrs


def _map(fh, path: Path) -> mmap.mmap:
    """The file as read-only memory; an empty file is an :class:`ArtifactError`, not mmap's ValueError."""
    try:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} cannot be read as a model file ({exc}): re-export it") from exc


def _onnx_graph(path: Path):
    """Initializers {name: (dims, bytes)}, nodes [(op, inputs, attrs)] and past-KV input element size."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from exc
    with fh, _map(fh, path) as buf:
        inits: dict[str, tuple[list[int], int]] = {}
        nodes = []
        kv_elem = 4
        try:
            graph = next((v for n, w, v in _fields(buf, 0, len(buf)) if n == 7 and w == 2), None)
            if graph is None:
                raise ValueError("no graph")
            for number, wire, value in _fields(buf, *graph):
                if wire != 2:
                    continue
                if number == 5:
                    name, dims, size = _tensor(buf, value)
                    inits[name] = (dims, size)
                elif number == 1:
                    nodes.append(_node(buf, value))
                elif number == 11:  # graph input: the past KV element type
                    iname, elem = "", None
                    for n2, _w2, v2 in _fields(buf, *value):
                        if n2 == 1:
                            iname = _text(buf, v2)
                        elif n2 == 2:
                            for n3, _w3, v3 in _fields(buf, *v2):
                                if n3 == 1:
                                    elem = next((v4 for n4, _w4, v4 in _fields(buf, *v3) if n4 == 1), None)
                    if iname.startswith("past_key_values") and elem in _ONNX_ELEM:
                        kv_elem = _ONNX_ELEM[elem]
        except (ValueError, IndexError) as exc:
            raise ArtifactError(f"{path} is not a readable ONNX model ({exc}): re-export it") from exc
    return inits, nodes, kv_elem


def onnx_shape(model_path: Path, info, precision: str, task: str) -> ModelShape:
    """Per-token costs of an ONNX model file (``info``: the manifest's ModelInfo)."""
    inits, nodes, kv_elem = _onnx_graph(model_path)
    consumers: dict[str, set[str]] = {}
    # a weight used through a Transpose (tied embeddings as the output layer) is still that initializer
    transposed = {outs[0]: ins[0] for op, ins, outs, _a in nodes if op == "Transpose" and ins and ins[0] in inits and outs}
    flops = 0
    for op, inputs, _outputs, attrs in nodes:
        for i, name in enumerate(inputs):
            if name in inits:
                consumers.setdefault(name, set()).add(op if not (op == "Gather" and i != 0) else "GatherIndex")
        if op == "MatMulNBits":
            flops += 2 * attrs.get("K", 0) * attrs.get("N", 0)
        elif op in ("MatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "FusedMatMul") and len(inputs) > 1:
            dims = inits.get(transposed.get(inputs[1], inputs[1]), (None,))[0]
            if dims and len(dims) == 2:
                flops += 2 * dims[0] * dims[1]
    streamed = gathered = 0
    int8 = any(op in ("MatMulInteger", "DynamicQuantizeMatMul") for op, _i, _o, _a in nodes)
    for name, (dims, size) in inits.items():
        ops = consumers.get(name, set())
        if ops and ops <= {"Gather"}:
            gathered += size
            streamed += size // max(1, dims[0] if dims else 1)  # one row per token
        else:
            streamed += size
    weight_bytes = sum(p.stat().st_size for p in model_path.parent.iterdir()  # the model file and its external data
                       if p.is_file() and p.name.startswith(model_path.name))
    output = 2 * info.vocab_size * info.hidden_size if info.vocab_size and info.hidden_size and task == "text-generation" else 0
    kv = None
    if info.n_layers and info.n_kv_heads and info.head_dim and task == "text-generation":
        kv = 2 * info.n_layers * info.n_kv_heads * info.head_dim * kv_elem
    return ModelShape(
        origin="onnx", backend="onnx", quant=precision, compute="int8" if int8 else "fp32",
        kind={"text-generation": "decoder", "text-classification": "classifier"}.get(task, "encoder"),
        n_params=info.n_params or sum(dims_numel(d) for d, _s in inits.values()), weight_bytes=weight_bytes,
        streamed_bytes=streamed, gathered_bytes=gathered, flops_per_token=flops, output_flops=min(output, flops),
        prefill_all_logits=True, n_layers=info.n_layers,
        n_heads=info.n_heads, n_kv_heads=info.n_kv_heads, head_dim=info.head_dim, kv_bytes_per_position=kv,
        context_length=info.context_length,
    )


def dims_numel(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf_header(path: Path) -> tuple[dict[str, object], list[tuple[str, list[int], int]]]:
    """Scalar metadata and tensor infos (name, dims, ggml type) of a GGUF file, read from its header only.

    gguf-py's reader maps every tensor and every tokenizer array into numpy objects (seconds for a
    small model); the header is all the roofline needs.
    """
    import struct

    meta: dict[str, object] = {}
    tensors = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from exc
    with fh, _map(fh, path) as buf:
        pos = 0

        def take(fmt: str):
            nonlocal pos
            (value,) = struct.unpack_from(fmt, buf, pos)
            pos += struct.calcsize(fmt)
            return value

        def string() -> str:
            nonlocal pos
            n = take("<Q")
            pos += n
            return bytes(buf[pos - n:pos]).decode("utf-8", "replace")

        def skip_or_read(vtype: int):
            nonlocal pos
            if vtype == 8:
                return string()
            if vtype == 9:
                item, count = take("<I"), take("<Q")
                if item in _GGUF_SCALAR:
                    pos += count * struct.calcsize(_GGUF_SCALAR[item])
                else:
                    for _ in range(count):
                        skip_or_read(item)
                return None
            return take(_GGUF_SCALAR[vtype])

        try:
            if bytes(buf[:4]) != b"GGUF":
                raise ValueError("bad magic")
            pos = 4
            version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
            if version < 2:
                raise ValueError(f"GGUF version {version} is too old")
            for _ in range(n_kv):
                key = string()
                meta[key] = skip_or_read(take("<I"))
            for _ in range(n_tensors):
                name = string()
                dims = [take("<Q") for _ in range(take("<I"))]
                gtype = take("<I")
                take("<Q")  # offset
                tensors.append((name, dims, gtype))
        except (ValueError, KeyError, struct.error, IndexError) as exc:
            raise ArtifactError(f"{path} is not a readable GGUF file ({exc}): re-export it") from exc
    return meta, tensors


def gguf_shape(path: Path, kv_elem: int = 2) -> ModelShape:
    """Per-token costs of a GGUF file (llama.cpp keeps the KV cache in f16: ``kv_elem`` 2 bytes)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError as exc:
        raise MissingDependencyError("gguf (to read GGUF tensor sizes)", "gguf") from exc
    meta, tensors = read_gguf_header(path)
    arch = str(meta.get("general.architecture") or "llama")
    tied = not any(name == "output.weight" for name, _d, _t in tensors)
    streamed = gathered = flops = n_params = output = 0
    by_type: dict[str, int] = {}
    for name, dims, gtype in tensors:
        try:
            qtype = GGMLQuantizationType(gtype)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"{path}: tensor {name} has ggml type {gtype}, unknown to this gguf package") from exc
        n = dims_numel(dims)
        size = n // block * type_size
        n_params += n
        by_type[qtype.name.lower()] = by_type.get(qtype.name.lower(), 0) + size
        if name == "token_embd.weight" and not tied:
            gathered += size
            streamed += size // max(1, dims[-1])  # one row per token (dims are [hidden, vocab])
            continue
        streamed += size
        if len(dims) >= 2:
            flops += 2 * n
            if name == "output.weight" or (tied and name == "token_embd.weight"):
                output = 2 * n
    quant = max(by_type, key=by_type.get) if by_type else "unknown"

    def meta_int(key: str) -> int | None:
        v = meta.get(f"{arch}.{key}")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    layers, heads, kv_heads = meta_int("block_count"), meta_int("attention.head_count"), meta_int("attention.head_count_kv")
    hidden = meta_int("embedding_length")
    head_dim = meta_int("attention.key_length") or (hidden // heads if hidden and heads else None)
    kv_heads = kv_heads or heads
    kv = 2 * layers * kv_heads * head_dim * kv_elem if layers and kv_heads and head_dim else None
    return ModelShape(
        origin="gguf", backend="llama.cpp", quant=quant, compute="int8" if quant in INT8_COMPUTE else "fp32",
        n_params=n_params, weight_bytes=path.stat().st_size, streamed_bytes=streamed, gathered_bytes=gathered,
        flops_per_token=flops, output_flops=output, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads, head_dim=head_dim,
        kv_bytes_per_position=kv, context_length=meta_int("context_length"),
    )


def artifact_shape(path: str | os.PathLike) -> ModelShape:
    """The :class:`ModelShape` of an artifact folder or a bare .gguf/.onnx file."""
    from edgekit.manifest import MANIFEST_NAME, model_info_from_folder, read_manifest

    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / MANIFEST_NAME).is_file():
            raise ArtifactError(f"{p} is not an edgekit artifact (no {MANIFEST_NAME}): pass an artifact folder or a .gguf/.onnx file")
        m = read_manifest(p)
        model_file = p / m.model_file
        if not model_file.is_file():
            raise ArtifactError(f"{p}: model file {m.model_file} is missing; re-export the artifact")
        if m.format == "gguf":
            return gguf_shape(model_file)
        return onnx_shape(model_file, m.model, m.precision, m.task)
    if p.suffix == ".gguf" and p.is_file():
        return gguf_shape(p)
    if p.suffix == ".onnx" and p.is_file():
        from edgekit.runtimes.onnx import infer_task_from_session

        task = infer_task_from_session(p)
        return onnx_shape(p, model_info_from_folder(p.parent, task), "fp32", task)
    if not p.exists():
        raise ArtifactError(f"{p} does not exist: pass an artifact folder, a .gguf or an .onnx file")
    raise ArtifactError(f"{p} is neither an artifact folder nor a .gguf/.onnx file")


def parse_params(text: str | float | int) -> int:
    """'3.2B', '135M', '7e9', 1.1e9 -> parameter count."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        s = str(text).strip().upper().replace("_", "")
        scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}.get(s[-1:], 1.0)
        try:
            value = float(s[:-1] if s[-1:] in "KMBGT" else s) * scale
        except ValueError:
            raise ConfigError(f"--params {text!r} is not a parameter count: use e.g. 3.2B, 135M or 7e9") from None
    if not value >= 1e5:
        raise ConfigError(f"--params {text!r} is too small: use e.g. 3.2B, 135M or 7e9")
    return int(value)


def quant_choices() -> list[str]:
    return sorted(GGUF_BPW) + sorted(ONNX_BPW)


def shape_from_params(
    params: int, quant: str, *, layers: int | None = None, kv_heads: int | None = None, head_dim: int | None = None,
    heads: int | None = None, context: int | None = None, untied_embedding_params: int = 0, output_params: int = 0,
) -> ModelShape:
    """A :class:`ModelShape` from a parameter count and a quantization: every weight at the type's bits per weight.

    An untied input embedding (``untied_embedding_params``) is resident but only gathered. The KV cache needs
    ``layers``, ``kv_heads`` and ``head_dim`` (f16 for GGUF, fp32 for ONNX). ``output_params`` (vocabulary x
    hidden size) lets the prefill count the logits layer once, as llama.cpp computes it (0: every position).
    """
    q = quant.lower().strip()
    if q in ("fp16", "fp32") or q in ONNX_BPW:
        backend, bpw = "onnx", ONNX_BPW[q]
    elif q in GGUF_BPW:
        backend, bpw = "llama.cpp", GGUF_BPW[q]
    else:
        raise ConfigError(f"unknown quantization {quant!r}: use one of {', '.join(quant_choices())}")
    for name, v in (("layers", layers), ("kv-heads", kv_heads), ("head-dim", head_dim)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ConfigError(f"--{name} must be an integer >= 1, got {v!r}")
    weight_bytes = int(params * bpw / 8)
    gathered = int(untied_embedding_params * bpw / 8)
    kv_elem = 2 if backend == "llama.cpp" else 4
    kv = 2 * layers * kv_heads * head_dim * kv_elem if layers and kv_heads and head_dim else None
    if heads is None and kv is not None:
        heads = kv_heads  # attention arithmetic is small; GQA head count is not needed to be exact
    return ModelShape(
        origin="params", backend=backend, quant=q, compute="int8" if q in INT8_COMPUTE else "fp32",
        n_params=params, weight_bytes=weight_bytes, streamed_bytes=weight_bytes - gathered, gathered_bytes=gathered,
        flops_per_token=2 * (params - untied_embedding_params), output_flops=2 * output_params,
        prefill_all_logits=backend == "onnx", n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
        head_dim=head_dim, kv_bytes_per_position=kv, context_length=context,
    )
