"""Quantize an ONNX model with onnxruntime's own tools.

* ``int8`` on encoders and classifiers: dynamic quantization, signed 8-bit weights
  per output channel (``quantize_dynamic``); activations are quantized at run time
  with one scale per tensor.
* ``int8`` on decoders: 8-bit weights in blocks of 32 (``MatMulNBits`` bits=8) with
  int8 compute (``accuracy_level=4``: activations quantized at run time per block).
  Per-tensor activation scales do not survive the activation outliers of small
  decoders: ``quantize_dynamic`` on SmolLM2-135M gave next-token KL 0.80 and top-1
  agreement 0.55 (zeroing one whole MLP matrix gives KL 1.1), the block-wise form
  KL 0.007 and top-1 0.93, and decodes faster. ``int8_mode="dynamic"`` forces the
  per-tensor form anyway.
* ``int4``: weight-only 4-bit blocks (``MatMulNBits``, asymmetric, block size 32,
  int8 compute); the vocabulary projection keeps 8 bits; activations stay float
  between the MatMuls.

Before any of them, a weight that reaches a MatMul through a Transpose (tied
embeddings) is stored transposed, so the quantizers see it as the weight it is.
* ``fp16``: weights and compute in float16 with float32 inputs/outputs
  (``onnxruntime.transformers.float16``).

Models over 2 GB are written with external data (one ``<model>.data`` file).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgekit import quants
from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.quants import Quant
from edgekit.translate import translated

TWO_GB = 2 * 1024**3


def needs_external_data(model_path: Path) -> bool:
    total = model_path.stat().st_size
    for p in model_path.parent.iterdir():
        if p.name.startswith(model_path.name) and p != model_path and p.suffix in (".data", ".onnx_data"):
            total += p.stat().st_size
    return total > TWO_GB


def save_model(model, out: Path, external: bool) -> None:
    import onnx

    if external:
        onnx.save_model(model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=out.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(out))


def fold_weight_transposes(model):
    """Replace ``MatMul(x, Transpose(W))`` with ``MatMul(x, W.T)`` stored as a weight.

    Tied embeddings reach the ONNX graph as a Transpose of the embedding matrix feeding
    the output layer. Quantizers only touch MatMuls whose weight is an initializer, so
    without this the output layer (for SmolLM2 113 MB of its 135M parameters' fp32 bytes)
    stays fp32 and is read in full for every generated token.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = []
    for node in list(model.graph.node):
        if node.op_type != "Transpose" or node.input[0] not in inits or len(inits[node.input[0]].dims) != 2:
            continue
        users = consumers.get(node.output[0], [])
        if not users or any(u.op_type != "MatMul" or list(u.input).index(node.output[0]) != 1 for u in users):
            continue
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [1, 0])
        weight = numpy_helper.to_array(inits[node.input[0]]).transpose(perm).copy()
        model.graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        model.graph.node.remove(node)
        folded.append(node.output[0])
    return folded


def _load_for_quantization(src: Path):
    import onnx

    model = onnx.load(str(src))
    fold_weight_transposes(model)
    return model


def _output_layer(model) -> list[str]:
    """Names of the MatMul nodes that produce a graph output (the vocabulary projection)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.output[0] in outputs]


def _nbits(src: Path, out: Path, external: bool, bits: int, symmetric: bool) -> tuple[str, dict[str, Any]]:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    def run(model, n_bits: int, only: list[str] | None):
        others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in only] if only else []
        q = MatMulNBitsQuantizer(
            model, bits=n_bits, block_size=32, is_symmetric=symmetric, accuracy_level=4,
            op_types_to_quantize=("MatMul",), nodes_to_exclude=others,
        )
        q.process()
        return q.model.model

    params: dict[str, Any] = {"bits": bits, "block_size": 32, "symmetric": symmetric, "accuracy_level": 4}
    model = _load_for_quantization(src)
    head = _output_layer(model)
    if bits < 8 and head:
        # as llama.cpp's k-quants do, the vocabulary projection keeps more bits than the rest:
        # at 4 bits it alone doubled SmolLM2's next-token KL
        model = run(model, 8, head)
        params["output_layer_bits"] = 8
    save_model(run(model, bits, None), out, external)
    return "matmul_nbits", params


def quantize(src: Path, out: Path, method: str | Quant, *, decoder: bool = False,
             int8_mode: str = "auto") -> tuple[str, dict[str, Any]]:
    """Write the ``method`` quantization of ``src`` to ``out``; return (onnxruntime tool used, its parameters).

    ``method``: an ONNX row of :mod:`edgekit.quants` (or its name) that needs a quantizer pass; its
    ``scheme`` (``encoder_scheme`` for encoders, :func:`edgekit.quants.onnx_scheme`) picks the pass.
    """
    q = method if isinstance(method, Quant) else quants.get(method)
    if q is None or q.format != "onnx":
        raise ConfigError(f"unknown quantization {method!r}: use one of {', '.join(quants.choices('onnx'))}",
                          param="quant")
    scheme = quants.onnx_scheme(q, decoder=decoder, int8_mode=int8_mode)
    if scheme not in _SCHEMES:
        raise ConfigError(f"{q.name} has no onnxruntime quantizer pass (scheme {scheme!r})", param="quant")
    try:
        import onnx  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("onnx (for quantization)", "export") from exc
    external = needs_external_data(src)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    with translated("onnx", "quantize", method=q.name):
        return _SCHEMES[scheme](src, out, external, q)


def _dynamic(src: Path, out: Path, external: bool, q: Quant) -> tuple[str, dict[str, Any]]:
    import onnxruntime.quantization as ortq

    ortq.quantize_dynamic(
        _load_for_quantization(src), str(out), per_channel=True, reduce_range=False, weight_type=ortq.QuantType.QInt8,
        use_external_data_format=external,
    )
    return "quantize_dynamic", {"weight_type": "int8", "per_channel": True, "activations": "dynamic per tensor"}


def _matmul_nbits(src: Path, out: Path, external: bool, q: Quant) -> tuple[str, dict[str, Any]]:
    return _nbits(src, out, external, bits=int(q.bits), symmetric=q.symmetric)


def _float16(src: Path, out: Path, external: bool, q: Quant) -> tuple[str, dict[str, Any]]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    save_model(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), out, external)
    return "float16", {"keep_io_types": True}


# a row's ``scheme`` -> the pass that makes it (``none``: the tracer's own output, no pass)
_SCHEMES = {"quantize_dynamic": _dynamic, "matmul_nbits": _matmul_nbits, "float16": _float16}


def model_files(model_path: Path) -> list[Path]:
    """The model file and its external data files, if any."""
    out = [model_path]
    for p in sorted(model_path.parent.iterdir()):
        if p != model_path and p.name.startswith(model_path.name) and p.is_file():
            out.append(p)
    return out

