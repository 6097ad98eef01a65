"""Exporters: Hugging Face checkpoints to ONNX and GGUF artifacts, each checked by the quality gate.

These modules may import torch, transformers and optimum (inside functions);
nothing on the runtime side imports them. The two exporters share
:mod:`edgekit.artifact` and :mod:`edgekit.quality` and never import each other;
:func:`gate_artifact` here re-gates an artifact of either format, importing its
exporter only when asked.
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
