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

import math
import mmap
import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from edgekit import quants
from edgekit.artifact import ResolvedArtifact, resolve_artifact
from edgekit.errors import ArtifactError, ConfigError, MissingDependencyError, check_int
from edgekit.gguf_header import kv_bytes_per_position, meta_count, read_gguf_header
from edgekit.names import BACKEND_OF_FORMAT, FORMATS, KIND_OF_TASK, Backend, Kind
from edgekit.protobuf import ONNX_ELEM_BYTES, read_onnx_graph
from edgekit.strict import StrictModel

# Bits per weight: the effective ``bpw`` of edgekit.quants' table (GGUF types and ONNX precisions, one row each).

# Which rate bounds the arithmetic (the roofline's ``kernel_gops``):
# * "int8": onnxruntime's integer GEMMs (MatMulInteger, DynamicQuantizeMatMul: the quantize_dynamic int8 form) run
#   at the int8 dot-product peak; those rows are marked ``int8_compute`` in edgekit.quants.
# * "quant": llama.cpp's quantized types (q8_0, q4_k ...). Their kernels are int8 dot products (the activations
#   are quantized to 8 bits), but they are bound by the SIMD instructions around the multiplies (unpacking,
#   scales, conversions), so they track the fp32 FMA rate at the vector width they are written for: 256 bits on
#   x86 (AVX2 and AVX-VNNI code), 128 bits on ARM. Measured at one thread on an AVX-512 host (CPU time,
#   SmolLM2-135M): the generic q4_1 path reaches 53 GOP/s, 0.44 of that host's 256-bit fp32 rate (121 GFLOP/s)
#   but 0.07 of its 512-bit VNNI int8 peak (814 GOP/s); the published Raspberry Pi 5 TinyLlama q8_0 prefill of the
#   same generation of kernels is 0.44 of its fp32 peak too. Cores without int8 dot products emulate them
#   (roofline.INT8_EMULATION).
# * "fp32": everything else (fp32/fp16 weights, onnxruntime's MatMulNBits), at the full fp32 peak.
def int8_compute(quant: str) -> bool:
    """Whether ``quant``'s matmuls run at the int8 peak (the table's ``int8_compute``)."""
    q = quants.get(quant)
    return q is not None and q.int8_compute


def compute_kind(quant: str) -> str:
    """The rate that bounds ``quant``'s matmuls: "int8", "quant" (llama.cpp's quantized kernels) or "fp32"."""
    q = quants.get(quant)
    if q is not None and q.int8_compute:
        return "int8"
    if q is not None and q.format == "gguf" and q.bits < 16:
        return "quant"
    return "fp32"


class ModelShape(StrictModel):
    """Per-token cost facts of one model (an artifact, or a parameter count and a quantization)."""

    origin: Literal[(*FORMATS, "params")]
    backend: Backend
    quant: str = Field(description="GGUF type of most weights, or the ONNX precision")
    compute: Literal["fp32", "int8", "quant"] = Field(
        description="which rate bounds the matmuls: int8 integer GEMMs, llama.cpp's quantized kernels, or fp32")
    kind: Kind = "decoder"
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


# ---- ONNX (the graph is read by edgekit.protobuf) ------------------------------------

def _map(fh, path: Path) -> mmap.mmap:
    """The file as read-only memory; an empty file is an :class:`ArtifactError`, not mmap's ValueError."""
    try:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} cannot be read as a model file ({exc}): re-export it") from exc


def _onnx_graph(path: Path):
    """Initializers {name: (dims, bytes)}, nodes [(op, inputs, outputs, attrs)] and past-KV input element size."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from exc
    with fh, _map(fh, path) as buf:
        try:
            graph = read_onnx_graph(buf)
        except (ValueError, IndexError) as exc:
            raise ArtifactError(f"{path} is not a readable ONNX model ({exc}): re-export it") from exc
    inits = {t.name: (t.dims, t.nbytes) for t in graph.initializers}
    kv_elem = 4
    for name, elem in graph.inputs:  # graph inputs: the past KV element type
        if name.startswith("past_key_values") and elem in ONNX_ELEM_BYTES:
            kv_elem = ONNX_ELEM_BYTES[elem]
    return inits, graph.nodes, kv_elem


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
        kind=KIND_OF_TASK.get(task, "encoder"),
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
            raise ArtifactError(f"{path}: tensor {name!r} has ggml type {gtype}, unknown to this gguf package") from exc
        n = dims_numel(dims)
        size = n // block * type_size
        n_params += n
        by_type[qtype.name.lower()] = by_type.get(qtype.name.lower(), 0) + size
        if name == "token_embd.weight" and not tied:
            gathered += size
            streamed += size // max(1, dims[-1] if dims else 1)  # one row per token (dims are [hidden, vocab])
            continue
        streamed += size
        if len(dims) >= 2:
            flops += 2 * n
            if name == "output.weight" or (tied and name == "token_embd.weight"):
                output = 2 * n
    file_bytes = path.stat().st_size
    if sum(by_type.values()) > file_bytes:
        raise ArtifactError(f"{path}: its tensors need {sum(by_type.values())} bytes but the file holds {file_bytes} "
                            "(truncated or corrupt): re-export it")
    quant = max(by_type, key=by_type.get) if by_type else "unknown"

    def meta_int(key: str) -> int | None:
        return meta_count(meta, arch, key)

    layers, heads, kv_heads = meta_int("block_count"), meta_int("attention.head_count"), meta_int("attention.head_count_kv")
    hidden = meta_int("embedding_length")
    head_dim = meta_int("attention.key_length") or (hidden // heads if hidden and heads else None)
    kv_heads = kv_heads or heads
    kv = kv_bytes_per_position(meta, kv_elem)
    return ModelShape(
        origin="gguf", backend="llama.cpp", quant=quant, compute=compute_kind(quant),
        n_params=n_params, weight_bytes=file_bytes, streamed_bytes=streamed, gathered_bytes=gathered,
        flops_per_token=flops, output_flops=output, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads, head_dim=head_dim,
        kv_bytes_per_position=kv, context_length=meta_int("context_length"),
    )


def artifact_shape(path: str | os.PathLike | ResolvedArtifact) -> ModelShape:
    """The :class:`ModelShape` of an artifact folder or a bare .gguf/.onnx file (or an already resolved one)."""
    art = path if isinstance(path, ResolvedArtifact) else resolve_artifact(path)
    if art.format == "gguf":
        return gguf_shape(art.model_file)
    return onnx_shape(art.model_file, art.model, art.precision or "fp32", art.task)


# Bounds of the numbers a shape is made of, far beyond any model today (about 2e12 parameters, 128 layers,
# 128 heads of 256, contexts of 10M tokens): only typos and absurd values are refused, with one line naming
# the parameter, before any arithmetic overflows and before a calibration run starts.
MIN_PARAMS, MAX_PARAMS = 10**5, 10**14
LIMITS = {
    "layers": 10_000, "kv_heads": 10_000, "heads": 10_000, "head_dim": 65_536,
    "context": 2**30, "prompt_tokens": 2**30, "gen_tokens": 2**30,
    "untied_embedding_params": MAX_PARAMS, "output_params": MAX_PARAMS,
}


def check_count(name: str, value, *, minimum: int = 1, maximum: int | None = None, required: bool = False) -> int | None:
    """``value`` checked as an integer in [minimum, the bound of ``name`` in :data:`LIMITS`] (None: not given,
    unless ``required``); anything else is a :class:`ConfigError` naming ``name``."""
    if value is None and not required:
        return None
    hi = maximum if maximum is not None else LIMITS[name]
    check_int(name, value, minimum)
    if value > hi:
        shown = str(value) if len(str(value)) <= 24 else str(value)[:20] + "..."
        raise ConfigError(f"{name} {shown} is beyond any model: pass at most {hi}", param=name)
    return value


def parse_params(text: str | float | int) -> int:
    """'3.2B', '135M', '7e9', 1.1e9 -> parameter count (from 1e5 to 1e14)."""
    hint = "use e.g. 3.2B, 135M or 7e9"
    shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:36] + "..."
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = text
    else:
        s = str(text).strip().upper().replace("_", "")
        scale = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}.get(s[-1:], 1.0)
        try:
            value = float(s[:-1] if s[-1:] in "KMBGT" else s) * scale
        except (ValueError, OverflowError):
            raise ConfigError(f"params={shown} is not a parameter count: {hint}", param="params") from None
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"params={shown} is not a parameter count: {hint}", param="params")
    if value < MIN_PARAMS:
        raise ConfigError(f"params={shown} is too small: {hint}", param="params")
    if value > MAX_PARAMS:
        raise ConfigError(f"params={shown} is more than any model has (at most 100T = 1e14): {hint}", param="params")
    return int(value)


def quant_choices() -> list[str]:
    return sorted(q.name for q in quants.rows("gguf")) + sorted(q.name for q in quants.rows("onnx"))


def _matrices(layers: int, hidden: int, ffn: int, q_dim: int, kv_dim: int, embedding: int) -> list[tuple[int, int]]:
    """(row length, parameters) of a decoder's weight matrices but the output layer: per layer q, k, v, o, gate,
    up and down; the token embedding when it is its own tensor (untied)."""
    per_layer = [(hidden, hidden * q_dim), (hidden, hidden * kv_dim), (hidden, hidden * kv_dim), (q_dim, q_dim * hidden),
                 (hidden, hidden * ffn), (hidden, hidden * ffn), (ffn, ffn * hidden)]
    out = [(length, n * layers) for length, n in per_layer]
    return out + [(hidden, embedding)] if embedding else out


def shape_from_params(
    params: int, quant: str, *, layers: int | None = None, kv_heads: int | None = None, head_dim: int | None = None,
    heads: int | None = None, context: int | None = None, untied_embedding_params: int = 0, output_params: int = 0,
    hidden: int | None = None, ffn: int | None = None,
) -> ModelShape:
    """A :class:`ModelShape` from a parameter count and a quantization: every weight at the type's bits per weight.

    With ``hidden`` and ``ffn`` (and the layer and head counts), a GGUF type's bits are the file's: the matrices
    llama.cpp writes in another type, because their rows do not fit the type's blocks, and its output layer
    (:func:`edgekit.quants.file_bits`).

    An untied input embedding (``untied_embedding_params``) is resident but only gathered. The KV cache needs
    ``layers``, ``kv_heads`` and ``head_dim`` (f16 for GGUF, fp32 for ONNX). ``output_params`` (vocabulary x
    hidden size) lets the prefill count the logits layer once, as llama.cpp computes it (0: every position).
    """
    q = quant.lower().strip() if isinstance(quant, str) else ""
    row = quants.get(q)
    if row is None:
        raise ConfigError(f"unknown quantization {quant!r}: use one of {', '.join(quant_choices())}")
    backend, bpw = BACKEND_OF_FORMAT[row.format], row.bpw
    check_count("params", params, minimum=MIN_PARAMS, maximum=MAX_PARAMS)
    for name, v in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim), ("heads", heads),
                    ("context", context)):
        check_count(name, v, minimum=2 if name == "context" else 1)
    for name, v in (("untied_embedding_params", untied_embedding_params), ("output_params", output_params)):
        check_count(name, v, minimum=0, maximum=params)
    if row.format == "gguf" and hidden and ffn and layers and heads and kv_heads and head_dim:
        bpw = quants.file_bits(row, _matrices(layers, hidden, ffn, heads * head_dim, kv_heads * head_dim,
                                              untied_embedding_params), (hidden, output_params) if output_params else None)
    weight_bytes = int(params * bpw / 8)
    gathered = int(untied_embedding_params * bpw / 8)
    kv_elem = 2 if backend == "llama.cpp" else 4
    kv = 2 * layers * kv_heads * head_dim * kv_elem if layers and kv_heads and head_dim else None
    if heads is None and kv is not None:
        heads = kv_heads  # attention arithmetic is small; GQA head count is not needed to be exact
    return ModelShape(
        origin="params", backend=backend, quant=q, compute=compute_kind(q),
        n_params=params, weight_bytes=weight_bytes, streamed_bytes=weight_bytes - gathered, gathered_bytes=gathered,
        flops_per_token=2 * (params - untied_embedding_params), output_flops=2 * output_params,
        prefill_all_logits=backend == "onnx", n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
        head_dim=head_dim, kv_bytes_per_position=kv, context_length=context,
    )
