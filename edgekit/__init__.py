"""edgekit: take small language models to the edge.

Export Hugging Face checkpoints to ONNX and GGUF with a quality gate, run them
behind one torch-free API with fallback to a remote LLM, and profile them per
target device.

    import edgekit
    art = edgekit.export_onnx("path/to/hf-model", "out/model-int8", quant="int8")
    model = edgekit.load("out/model-int8")
    print(model.generate("The capital of France is", max_tokens=16).text)

Names are imported lazily, so ``import edgekit`` stays light: the runtime never
pulls in torch, and onnxruntime or llama-cpp-python load only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edgekit.version import __version__

_LAZY = {
    "load": "edgekit.runtimes",
    "Model": "edgekit.runtimes.base",
    "GenerationConfig": "edgekit.runtimes.base",
    "GenerationResult": "edgekit.runtimes.base",
    "TokenEvent": "edgekit.runtimes.base",
    "export_onnx": "edgekit.exporters.onnx",
    "export_gguf": "edgekit.exporters.gguf",
    "gate_gguf": "edgekit.exporters.gguf",
    "gate_artifact": "edgekit.exporters",
    "Artifact": "edgekit.artifact",
    "read_manifest": "edgekit.manifest",
    "Manifest": "edgekit.manifest",
    "RemoteLLM": "edgekit.router.remote",
    "Tier": "edgekit.runtimes.tier",
    "Router": "edgekit.router",
    "Policy": "edgekit.router",
    "TargetProfile": "edgekit.targets",
    "bench": "edgekit.devices.api",  # this machine, or device=[...] over SSH
    "predict": "edgekit.profiler",
    "package": "edgekit.package",  # the function; the module edgekit.package is callable too
    "optimize": "edgekit.optimize",  # the function, bound in edgekit/optimize/__init__.py
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from edgekit.artifact import Artifact
    from edgekit.exporters import gate_artifact
    from edgekit.exporters.gguf import export_gguf, gate_gguf
    from edgekit.exporters.onnx import export_onnx
    from edgekit.manifest import Manifest, read_manifest
    from edgekit.package import package
    from edgekit.runtimes import load
    from edgekit.runtimes.base import GenerationConfig, GenerationResult, Model, TokenEvent
