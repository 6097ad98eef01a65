"""GGUF quantization with llama.cpp's own quantizer (``llama_model_quantize`` via llama-cpp-python).

The converter writes f32, f16 or bf16 directly; every other type is made by
llama.cpp from the f16 intermediate, so the block formats, the k-quant mixes
(``q4_k_m`` keeps some tensors at higher precision) and the fallbacks for rows
that do not divide into 256-wide k-blocks are exactly llama.cpp's.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from edgekit import quants
from edgekit.deps import llama_cpp_module
from edgekit.errors import ConfigError, ExportError


def quantize(src: Path, dst: Path, quant: str, *, threads: int | None = None) -> dict:
    """Quantize the GGUF ``src`` to ``dst`` with llama.cpp; return the manifest's quantization params."""
    q = quants.export_quant("gguf", quant)
    if q.direct:
        raise ConfigError(f"{q.name} is written by the converter, not quantized", param="quant")
    lc = llama_cpp_module("GGUF export")
    params = lc.llama_model_quantize_default_params()
    params.ftype = int(q.llama_ftype())
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
        "llama_ftype": int(q.llama_ftype()),
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
        lc.llama_log_set(lc._logger.llama_log_callback, None)  # llama-cpp-python's own callback


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
