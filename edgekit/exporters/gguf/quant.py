"""GGUF quantization with llama.cpp's own quantizer (``llama_model_quantize`` via llama-cpp-python).

The converter writes f32, f16 or bf16 directly; every other type is made by
llama.cpp from the f16 intermediate, so the block formats, the k-quant mixes
(``q4_k_m`` keeps some tensors at higher precision) and the fallbacks for rows
that do not divide into 256-wide k-blocks are exactly llama.cpp's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import ExportError, MissingDependencyError


@dataclass(frozen=True)
class QuantType:
    name: str
    ftype: int  # llama.cpp's llama_ftype
    bits: float  # nominal bits per weight of the main type (for size expectations)
    direct: bool  # written by the converter itself (no llama.cpp pass)
    description: str


QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("f32", 0, 32.0, True, "32-bit floats, no rounding"),
        QuantType("f16", 1, 16.0, True, "16-bit floats (norms stay f32)"),
        QuantType("bf16", 32, 16.0, True, "bfloat16 (norms stay f32)"),
        QuantType("q8_0", 7, 8.5, False, "8-bit blocks of 32, one f16 scale each"),
        QuantType("q6_k", 18, 6.5625, False, "6-bit k-quant"),
        QuantType("q5_k_m", 17, 5.5, False, "5-bit k-quant mix (attention v / ffn down at q6_k)"),
        QuantType("q4_k_m", 15, 4.5, False, "4-bit k-quant mix (attention v / ffn down at q6_k)"),
        QuantType("q4_0", 2, 4.5, False, "4-bit blocks of 32, one f16 scale each"),
    )
}


def quant_type(name: str) -> QuantType:
    from edgekit.errors import ConfigError

    q = QUANT_TYPES.get(str(name).lower())
    if q is None:
        raise ConfigError(f"unknown GGUF quantization {name!r}: use one of {', '.join(QUANT_TYPES)}")
    return q


def llama_cpp_module():
    """llama_cpp, with its C-side log callback quieted (errors still print)."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python (for GGUF export)", "gguf") from exc
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    return llama_cpp


def quantize(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> dict:
    """Quantize the GGUF ``src`` to ``dst`` with llama.cpp; return the manifest's quantization params."""
    q = quant_type(quant)
    if q.direct:
        raise ExportError(f"{q.name} is written by the converter, not quantized")
    lc = llama_cpp_module()
    params = lc.llama_model_quantize_default_params()
    params.ftype = q.ftype
    params.nthread = int(threads or os.cpu_count() or 1)
    with _captured_stderr() as log, _captured_llama_log(lc, log):
        rc = lc.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0 or not dst.is_file():
        lines = [line for line in log.read().splitlines() if line.strip()]
        raise ExportError(
            f"llama.cpp could not quantize {src.name} to {q.name} (llama_model_quantize returned {rc}"
            + (f": {lines[-1].strip()}" if lines else "") + ")"
        )
    fallbacks = sum("falling back" in line for line in log.read().splitlines())
    return {
        "ftype": q.name.upper(),
        "llama_ftype": q.ftype,
        "intermediate": "f16",
        "quantizer": "llama_model_quantize",
        "threads": params.nthread,
        "fallback_tensors": fallbacks,
    }


class _Log:
    def __init__(self):
        self.text = ""
        self.lines: list[str] = []

    def read(self) -> str:
        return self.text + "".join(self.lines)


@contextlib.contextmanager
def _captured_llama_log(lc, log: _Log):
    """Collect llama.cpp's log lines (the quantizer's per-tensor report) instead of printing them;
    llama-cpp-python's own callback is put back afterwards."""

    @lc.llama_log_callback
    def collect(level, text, user_data):
        log.lines.append(text.decode("utf-8", errors="replace"))

    lc.llama_log_set(collect, None)
    try:
        yield
    finally:
        from llama_cpp import _logger

        lc.llama_log_set(_logger.llama_log_callback, None)


@contextlib.contextmanager
def _captured_stderr():
    """Send what the C library prints on file descriptor 2 to a temporary file for the duration.

    llama.cpp's quantizer prints a line per tensor (and a warning for every k-quant
    fallback) straight to stderr; the CLI shows progress bars instead, and a failure
    quotes the last line in its error.
    """
    sys.stderr.flush()
    log = _Log()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            log.text = tmp.read().decode("utf-8", errors="replace")
