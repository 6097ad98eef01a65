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
fp32 scale per block (int4 also a 4-bit zero point and a float16 block minimum
per block: 4 + 1 + 0.125 + 0.5 = 5.625 bpw); quantize_dynamic int8 stores 8 bits
per channel-scaled weight.

``file_type`` names the ``gguf.LlamaFileType`` member llama.cpp writes for the
type; it is resolved only when asked (:meth:`Quant.llama_ftype`), because gguf
is an optional extra and ``import edgekit.quants`` must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    @property
    def choice(self) -> str:
        """The name the exporter (and its CLI option) takes."""
        return self.option or self.name

    def llama_ftype(self) -> int:
        """llama.cpp's ``llama_ftype`` for this type, from gguf-py's ``LlamaFileType``."""
        if self.file_type is None:
            raise ConfigError(f"{self.name} is not a llama.cpp file type: use one of {', '.join(choices('gguf'))}")
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
    # ---- ONNX (exporters/onnx_quant.py) ----
    _onnx("fp32", 32, 32.0, "fp32, as traced", option="none", direct=True),
    _onnx("int8", 8, 9.0, "encoders: quantize_dynamic per-channel; decoders: 8-bit block-wise MatMulNBits"),
    _onnx("int4", 4, 5.625,
          "weight-only 4-bit MatMulNBits, output layer at 8 bits (fused decoders: float block minimum)"),
    _onnx("fp16", 16, 16.0, "weights and compute in float16"),
    _onnx("int8-dynamic", 8, 8.0, "int8 by quantize_dynamic (int8_mode='dynamic'); recorded as int8",
          export=False, int8_compute=True),
    # ---- GGUF, made by edgekit's converter (direct) or llama.cpp's quantizer from an f16 intermediate ----
    _gguf("f32", 32, 32.0, "32-bit floats, no rounding", "ALL_F32", direct=True),
    _gguf("f16", 16, 16.0, "16-bit floats (norms stay f32)", "MOSTLY_F16", direct=True),
    _gguf("bf16", 16, 16.0, "bfloat16 (norms stay f32)", "MOSTLY_BF16", direct=True),
    _gguf("q8_0", 8.5, 8.5, "8-bit blocks of 32, one f16 scale each", "MOSTLY_Q8_0"),
    _gguf("q6_k", 6.5625, 6.5625, "6-bit k-quant", "MOSTLY_Q6_K"),
    _gguf("q5_k_m", 5.5, 5.70, "5-bit k-quant mix (attention v / ffn down at q6_k)", "MOSTLY_Q5_K_M"),
    _gguf("q4_k_m", 4.5, 4.90, "4-bit k-quant mix (attention v / ffn down at q6_k)", "MOSTLY_Q4_K_M"),
    _gguf("q4_0", 4.5, 4.5, "4-bit blocks of 32, one f16 scale each", "MOSTLY_Q4_0"),
    # ---- GGUF types edgekit does not export, for predictions from a parameter count ----
    _gguf("q5_1", 6.0, 6.0, "5-bit blocks of 32, scale and minimum", "MOSTLY_Q5_1", export=False),
    _gguf("q5_0", 5.5, 5.5, "5-bit blocks of 32, one scale", "MOSTLY_Q5_0", export=False),
    _gguf("q4_1", 5.0, 5.0, "4-bit blocks of 32, scale and minimum", "MOSTLY_Q4_1", export=False),
    _gguf("iq4_nl", 4.5, 4.5, "4-bit non-linear blocks of 32", "MOSTLY_IQ4_NL", export=False),
    _gguf("iq4_xs", 4.25, 4.25, "4-bit non-linear super-blocks of 256", "MOSTLY_IQ4_XS", export=False),
    _gguf("q5_k_s", 5.5, 5.57, "5-bit k-quant, small mix", "MOSTLY_Q5_K_S", export=False),
    _gguf("q4_k_s", 4.5, 4.67, "4-bit k-quant, small mix", "MOSTLY_Q4_K_S", export=False),
    _gguf("q3_k_l", 3.4375, 4.31, "3-bit k-quant, large mix", "MOSTLY_Q3_K_L", export=False),
    _gguf("q3_k_m", 3.4375, 4.00, "3-bit k-quant, medium mix", "MOSTLY_Q3_K_M", export=False),
    _gguf("q3_k_s", 3.4375, 3.65, "3-bit k-quant, small mix", "MOSTLY_Q3_K_S", export=False),
    _gguf("q2_k", 2.625, 3.17, "2-bit k-quant mix", "MOSTLY_Q2_K", export=False),
    _gguf("q2_k_s", 2.625, 3.17, "2-bit k-quant, small mix", "MOSTLY_Q2_K_S", export=False),
    _gguf("iq3_m", 3.4375, 3.66, "3-bit i-quant mix", "MOSTLY_IQ3_M", export=False),
    _gguf("iq3_xxs", 3.0625, 3.06, "3-bit i-quant", "MOSTLY_IQ3_XXS", export=False),
    _gguf("iq2_xs", 2.3125, 2.31, "2-bit i-quant", "MOSTLY_IQ2_XS", export=False),
    # ggml tensor types that are no file type of their own (what a GGUF's dominant tensor type reads as)
    _gguf("q5_k", 5.5, 5.5, "5-bit k-quant tensors", export=False),
    _gguf("q4_k", 4.5, 4.5, "4-bit k-quant tensors", export=False),
    _gguf("q3_k", 3.4375, 3.4375, "3-bit k-quant tensors", export=False),
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
    raise ConfigError(f"unknown {what} {choice!r}: use one of {', '.join(choices(format))}")


def bits_per_weight(name: str) -> float:
    """Effective bits per weight of a quantization type (the profiler's sizes)."""
    q = get(name)
    if q is None:
        raise ConfigError(f"unknown quantization {name!r}: use one of {', '.join(sorted(QUANTS))}")
    return q.bpw


def help_text(format: str) -> str:
    """One line per exportable type of ``format``, for the CLI's option help."""
    return "; ".join(f"{q.choice}: {q.help}" for q in rows(format, export=True)) + "."
