"""Every quantization type edgekit knows, one row each (plain data, in the manner of gguf-py's ``constants.py``).

A row's ``name`` is what an artifact's manifest records as its precision and
what the gate's bounds (:data:`edgekit.quality.DEFAULT_THRESHOLDS`) are keyed
by. The exporters' choices (``export_onnx(quant=)``, ``export_gguf(quant=)``
and the CLI's ``--quant``), their dispatch, the gate's threshold keys and the
profiler's bytes per weight all read this table; adding a quantization type is
one row here plus its gate bounds in quality.py.

Bits per weight: ``bits`` is the nominal size of the main type (its block
layout); ``bpw`` the effective size over a whole model, which is what the
profiler multiplies parameter counts by. They differ for llama.cpp's k-quant
mixes, which keep some tensors at a higher type: their ``bpw`` is from the file
sizes llama.cpp's own quantize tool lists for Llama-3-8B
(tools/quantize/quantize.cpp, QUANT_OPTIONS: "Q4_K_M : 4.58G" over 8.03e9
parameters = 4.90 bpw). edgekit's ONNX rows: MatMulNBits in blocks of 32 with an
fp32 scale and a zero point per block (4 bits: 4 + 1 + 0.125 = 5.125 bpw; 8 bits:
9.25); fused int4 keeps ffn_down, part of attention and the output layer at 8 bits,
about 6.9 bpw over a model; quantize_dynamic int8 stores 8 bits per channel-scaled
weight.

ONNX rows also carry how the exporters make them, so no exporter dispatches by
name: ``scheme`` is the onnxruntime pass of the traced path (``none`` for a row
the tracer writes itself, ``matmul_nbits`` block-wise weights, ``quantize_dynamic``
per-channel int8, ``float16``) and ``encoder_scheme`` the one encoders and
classifiers get instead (also what ``int8_mode="dynamic"`` forces);
``fused_plan`` the fused decoder builder's ``QuantPlan`` fields (None: the fused
builder does not make the row); ``traced_bounds`` the decoder gate bounds of
the traced path where they differ from quality.py's (which are the fused
builder's).

``file_type`` names the ``gguf.LlamaFileType`` member llama.cpp writes for the
type; it is resolved only when asked (:meth:`Quant.llama_ftype`), because gguf
is an optional extra and ``import edgekit.quants`` must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from edgekit.errors import ConfigError, MissingDependencyError


@dataclass(frozen=True)
class Quant:
    name: str  # the manifest's precision and the gate's bounds key
    format: str  # "onnx" | "gguf" (edgekit.names.FORMATS)
    bits: float  # nominal bits per weight of the main type
    bpw: float  # effective bits per weight over the whole model (the profiler's)
    help: str
    file_type: str | None = None  # gguf.LlamaFileType member name (GGUF types a file can be made of)
    option: str | None = None  # the exporter's name for it when it differs from ``name`` (ONNX "none" = fp32)
    export: bool = True  # an exporter makes it (False: known to the profiler's predictions only)
    direct: bool = False  # written by the converter (GGUF) or the tracer (ONNX) itself, with no quantizer pass
    int8_compute: bool = False  # matmuls run at the int8 dot-product peak (onnxruntime's integer GEMMs)
    # ---- ONNX: how the exporters make the row (see the module docstring) ----
    scheme: str | None = None  # traced path: "none" | "matmul_nbits" | "quantize_dynamic" | "float16"
    encoder_scheme: str | None = None  # traced encoders/classifiers, when it differs from ``scheme``
    symmetric: bool = False  # matmul_nbits: symmetric blocks (no zero point)
    fused_plan: Mapping[str, Any] | None = field(default=None, hash=False)  # QuantPlan(**fused_plan)
    traced_bounds: Mapping[str, float] | None = field(default=None, hash=False)  # traced decoders' gate bounds
    # ---- GGUF: what llama.cpp writes for a tensor whose rows do not fit the type's blocks ----
    block: int = 0  # weights per block: a tensor's row length must be a multiple of it
    fallback: str | None = None  # the type llama.cpp writes such a tensor in instead

    @property
    def choice(self) -> str:
        """The name the exporter (and its CLI option) takes."""
        return self.option or self.name

    def llama_ftype(self) -> int:
        """llama.cpp's ``llama_ftype`` for this type, from gguf-py's ``LlamaFileType``."""
        if self.file_type is None:
            raise ConfigError(f"{self.name} is not a llama.cpp file type: use one of {', '.join(choices('gguf'))}",
                              param="quant")
        try:
            from gguf import LlamaFileType
        except ImportError as exc:
            raise MissingDependencyError("gguf (gguf-py, for GGUF files)", "gguf") from exc
        return LlamaFileType[self.file_type]


def _onnx(name, bits, bpw, help, **kw) -> Quant:
    return Quant(name, "onnx", bits, bpw, help, **kw)


def _gguf(name, bits, bpw, help, file_type=None, **kw) -> Quant:
    return Quant(name, "gguf", bits, bpw, help, file_type=file_type, **kw)


_ROWS = (
    # ---- ONNX (traced: exporters/onnx_quant.py; fused decoders: exporters/onnx_fused) ----
    _onnx("fp32", 32, 32.0, "fp32, as traced", option="none", direct=True, scheme="none",
          fused_plan={"default_bits": 0}),
    # fused int8, RTN: SmolLM2-135M KL 0.007, top-1 0.96, 158 MB
    _onnx("int8", 8, 9.0, "encoders: quantize_dynamic per-channel; decoders: 8-bit block-wise MatMulNBits",
          scheme="matmul_nbits", encoder_scheme="quantize_dynamic", symmetric=True,
          fused_plan={"default_bits": 8, "head_bits": 8, "embed_bits": 8}),
    # fused int4, chosen on SmolLM2-135M moved off its 4-bit grid (benchmarks/native_like.py; the packaged
    # folder is dequantized from Q4_1, so every block already sits on a 4-bit grid), measured by
    # benchmarks/int4_variants.py: KL mean / top-1 against that copy, size of model.onnx + data, decode tok/s
    # at 2 threads relative to the float-minimum plan. Integer zero points with importance-weighted search,
    # 8 bits for every ffn_down and for attn_qkv on llama.cpp's use_more_bits layers, output layer 8 bits:
    # 121 MB, 0.215 / 0.731, 1.09x (llama.cpp q4_k_m on the same copy: 105.5 MB, 0.148 / 0.804, 0.85x; its
    # k-quants fall back to q5_0 / q8_0 on SmolLM2's 576-wide rows, about 6 bits a weight). The others: float
    # block minimum (Q4_1's grid) 111 MB, 0.618 / 0.591, 1.00x; integer search 104 MB, 0.432 / 0.657, 1.12x;
    # GPTQ 104 MB, 0.387; search + the use_more_bits mix alone 114 MB, 0.252; 30% of the matrices at 8 bits by
    # measured rounding cost 120 MB, 0.246. None reaches q4_k_m's KL within 1.15x its size on this model.
    # A source already on a 4-bit grid (a checkpoint dequantized from Q4_1) gets the float-minimum plan
    # (``on_grid``), which reproduces the grid: packaged SmolLM2 0.026 / 0.904, against 0.182 / 0.794 for the
    # plan above. quality.py's int4 bounds are the fused builder's; optimum-traced int4 decoders
    # (onnxruntime's RTN quantizer, SmolLM2-135M KL 0.50, top-1 0.63) keep the bounds they had (traced_bounds).
    _onnx("int4", 4, 6.9,
          "weight-only 4-bit MatMulNBits, ffn_down and part of attention qkv and the output layer at 8 bits "
          "(fused decoders)",
          scheme="matmul_nbits",
          fused_plan={"default_bits": 4, "head_bits": 8, "embed_bits": 4, "method": "search",
                      "eight_bit": ("ffn_down", "attn_qkv:more"),
                      "on_grid": {"method": "minmax", "eight_bit": ()}},
          traced_bounds={"kl_mean": 0.8, "kl_max": 6.0, "top1": 0.55}),
    _onnx("fp16", 16, 16.0, "weights and compute in float16", scheme="float16"),
    _onnx("int8-dynamic", 8, 8.0, "int8 by quantize_dynamic (int8_mode='dynamic'); recorded as int8",
          export=False, int8_compute=True),
    # ---- GGUF, made by edgekit's converter (direct) or llama.cpp's quantizer from an f16 intermediate ----
    _gguf("f32", 32, 32.0, "32-bit floats, no rounding", "ALL_F32", direct=True),
    _gguf("f16", 16, 16.0, "16-bit floats (norms stay f32)", "MOSTLY_F16", direct=True),
    _gguf("bf16", 16, 16.0, "bfloat16 (norms stay f32)", "MOSTLY_BF16", direct=True),
    _gguf("q8_0", 8.5, 8.5, "8-bit blocks of 32, one f16 scale each", "MOSTLY_Q8_0", block=32),
    _gguf("q6_k", 6.5625, 6.5625, "6-bit k-quant", "MOSTLY_Q6_K", block=256, fallback="q8_0"),
    _gguf("q5_k_m", 5.5, 5.70, "5-bit k-quant mix (attention v / ffn down at q6_k)", "MOSTLY_Q5_K_M",
          block=256, fallback="q5_1"),
    _gguf("q4_k_m", 4.5, 4.90, "4-bit k-quant mix (attention v / ffn down at q6_k)", "MOSTLY_Q4_K_M",
          block=256, fallback="q5_0"),
    _gguf("q4_0", 4.5, 4.5, "4-bit blocks of 32, one f16 scale each", "MOSTLY_Q4_0", block=32),
    # ---- GGUF types edgekit does not export, for predictions from a parameter count ----
    _gguf("q5_1", 6.0, 6.0, "5-bit blocks of 32, scale and minimum", "MOSTLY_Q5_1", export=False, block=32),
    _gguf("q5_0", 5.5, 5.5, "5-bit blocks of 32, one scale", "MOSTLY_Q5_0", export=False, block=32),
    _gguf("q4_1", 5.0, 5.0, "4-bit blocks of 32, scale and minimum", "MOSTLY_Q4_1", export=False, block=32),
    _gguf("iq4_nl", 4.5, 4.5, "4-bit non-linear blocks of 32", "MOSTLY_IQ4_NL", export=False, block=32),
    _gguf("iq4_xs", 4.25, 4.25, "4-bit non-linear super-blocks of 256", "MOSTLY_IQ4_XS", export=False,
          block=256, fallback="iq4_nl"),
    _gguf("q5_k_s", 5.5, 5.57, "5-bit k-quant, small mix", "MOSTLY_Q5_K_S", export=False, block=256, fallback="q5_1"),
    _gguf("q4_k_s", 4.5, 4.67, "4-bit k-quant, small mix", "MOSTLY_Q4_K_S", export=False, block=256, fallback="q5_0"),
    _gguf("q3_k_l", 3.4375, 4.31, "3-bit k-quant, large mix", "MOSTLY_Q3_K_L", export=False,
          block=256, fallback="iq4_nl"),
    _gguf("q3_k_m", 3.4375, 4.00, "3-bit k-quant, medium mix", "MOSTLY_Q3_K_M", export=False,
          block=256, fallback="iq4_nl"),
    _gguf("q3_k_s", 3.4375, 3.65, "3-bit k-quant, small mix", "MOSTLY_Q3_K_S", export=False,
          block=256, fallback="iq4_nl"),
    _gguf("q2_k", 2.625, 3.17, "2-bit k-quant mix", "MOSTLY_Q2_K", export=False, block=256, fallback="iq4_nl"),
    _gguf("q2_k_s", 2.625, 3.17, "2-bit k-quant, small mix", "MOSTLY_Q2_K_S", export=False,
          block=256, fallback="iq4_nl"),
    _gguf("iq3_m", 3.4375, 3.66, "3-bit i-quant mix", "MOSTLY_IQ3_M", export=False),
    _gguf("iq3_xxs", 3.0625, 3.06, "3-bit i-quant", "MOSTLY_IQ3_XXS", export=False),
    _gguf("iq2_xs", 2.3125, 2.31, "2-bit i-quant", "MOSTLY_IQ2_XS", export=False),
    # ggml tensor types that are no file type of their own (what a GGUF's dominant tensor type reads as)
    _gguf("q5_k", 5.5, 5.5, "5-bit k-quant tensors", export=False, block=256, fallback="q5_1"),
    _gguf("q4_k", 4.5, 4.5, "4-bit k-quant tensors", export=False, block=256, fallback="q5_0"),
    _gguf("q3_k", 3.4375, 3.4375, "3-bit k-quant tensors", export=False, block=256, fallback="iq4_nl"),
)

QUANTS: dict[str, Quant] = {q.name: q for q in _ROWS}


def get(name: str) -> Quant | None:
    """The row called ``name`` (case-insensitive), or None."""
    return QUANTS.get(str(name).lower().strip())


def rows(format: str | None = None, *, export: bool | None = None) -> list[Quant]:
    """The rows of one format (or all), optionally only those an exporter makes (``export=True``) or not."""
    return [q for q in QUANTS.values()
            if (format is None or q.format == format) and (export is None or q.export == export)]


def choices(format: str) -> list[str]:
    """The names the ``format`` exporter takes, in table order (ONNX: none, int8, int4, fp16)."""
    return [q.choice for q in rows(format, export=True)]


def export_quant(format: str, choice: str) -> Quant:
    """The row the ``format`` exporter makes for ``choice``; :class:`ConfigError` naming the choices otherwise."""
    for q in rows(format, export=True):
        if q.choice == str(choice).lower():
            return q
    what = "GGUF quantization" if format == "gguf" else "quantization"
    raise ConfigError(f"unknown {what} {choice!r}: use one of {', '.join(choices(format))}", param="quant")


def fused_rows() -> list[Quant]:
    """The ONNX rows the fused decoder builder makes (those with a ``fused_plan``)."""
    return [q for q in rows("onnx", export=True) if q.fused_plan is not None]


def onnx_scheme(q: Quant, *, decoder: bool, int8_mode: str = "auto") -> str:
    """The traced path's onnxruntime pass for row ``q``: its ``encoder_scheme`` for encoders and classifiers
    (and wherever ``int8_mode="dynamic"`` forces it), else its ``scheme``."""
    if q.encoder_scheme and (int8_mode == "dynamic" or (int8_mode == "auto" and not decoder)):
        return q.encoder_scheme
    return q.scheme or "none"


def file_bits(q: Quant, matrices: Sequence[tuple[int, int]], output: tuple[int, int] | None) -> float:
    """The bits per weight a llama.cpp file of type ``q`` has over these tensors, as llama.cpp types them.

    ``matrices``: (row length, parameters) of each weight matrix but the output layer; ``output``: the output
    layer's (the token embedding when the two are tied), or None. Two rules of llama.cpp's quantizer
    (src/llama-quant.cpp, ``llama_tensor_get_type``) decide a small model's size:

    * a tensor whose rows are not a multiple of the type's block is written in its ``fallback`` type instead
      (k-quants have blocks of 256: SmolLM2's hidden size 576 sends q4_k_m's attention and gate/up matrices
      to q5_0 and q6_k's to q8_0, so its q6_k file is 138 MB where 6.56 bits would make 111);
    * the output layer of every quantized type below q8_0 is q6_k, or q8_0 when its rows do not fit 256.

    A matrix that fits keeps the row's effective ``bpw`` (its mix); direct float types are what they say.
    """
    if q.format != "gguf" or q.direct or not q.block:
        return q.bpw
    def bits(row: Quant, length: int) -> float:
        if length % row.block == 0 or row.fallback is None:
            return row.bpw
        return QUANTS[row.fallback].bpw

    total = sum(n for _, n in matrices) + (output[1] if output else 0)
    if total <= 0:
        return q.bpw
    weighted = sum(bits(q, length) * n for length, n in matrices)
    if output is not None:
        length, n = output
        out = q if q.name == "q8_0" else QUANTS["q6_k"]
        weighted += bits(out, length) * n
    return weighted / total


def help_text(format: str) -> str:
    """One line per exportable type of ``format``, for the CLI's option help."""
    return "; ".join(f"{q.choice}: {q.help}" for q in rows(format, export=True)) + "."
