"""Exporters: Hugging Face checkpoints to ONNX and GGUF artifacts, each checked by the quality gate.

* :mod:`.onnx`: ``export_onnx`` / ``gate_onnx``, the ONNX entry point. It hands decoders of the families
  :mod:`.onnx_fused` covers to that builder (one fused graph written from the safetensors, quantized in
  numpy) and traces the rest with optimum-onnx (:mod:`.onnx_graph` rewrites, :mod:`.onnx_quant`
  quantization with onnxruntime's tools).
* :mod:`.gguf`: ``export_gguf`` / ``gate_gguf``: the safetensors -> GGUF converter, vocabulary, llama.cpp quantizer.
* here: :func:`gate_artifact` re-gates an artifact of either format, importing its exporter only when asked.

These modules may import torch, transformers and optimum (inside functions); nothing on the runtime side
imports them. Both exporters build on :mod:`edgekit.artifact`, :mod:`edgekit.quality` and the core leaves.
The two exporters never import each other: both read the family registry (:mod:`edgekit.families`: which
model types, llama.cpp architecture, tensor names, rope support per exporter, the config's shape) and the
safetensors reader (:mod:`edgekit.safetensors_io`).

The one seam to the runtimes (``tests/test_layout.py``, ``SEAMS``): the gate runs the artifact it just wrote
through :mod:`edgekit.runtimes` (``load``, ``onnx.open_onnx``, ``llamacpp.LlamaCppModel``), and the exporters
read tokenizer files with the runtimes' own reader (``runtimes.tokenizer``: the tokenizer the gate's reference
prompts are encoded with, the chat template a GGUF carries), so that both sides agree on them. The runtimes
never import exporters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.artifact import Artifact

if TYPE_CHECKING:  # pragma: no cover
    from edgekit.manifest import GateReport
    from edgekit.progress import Progress

def gate_artifact(
    artifact: str | Path,
    source: str | Path,
    *,
    prompts: str | Path | None = None,
    thresholds: dict[str, float] | None = None,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> GateReport:
    """Re-run the quality gate of an existing artifact (ONNX or GGUF) against its original model."""
    if Artifact.open(artifact).manifest.format == "gguf":
        from edgekit.exporters.gguf import gate_gguf as regate
    else:
        from edgekit.exporters.onnx import gate_onnx as regate
    return regate(artifact, source, prompts=prompts, thresholds=thresholds, allow_pickle=allow_pickle,
                  threads=threads, progress=progress)
