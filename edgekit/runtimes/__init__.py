"""Local runtimes behind one API. ``load`` picks the backend from the manifest or the file.

Backends import their heavy library inside themselves only (onnxruntime in
``onnx.py``, llama-cpp-python in ``llamacpp.py``); nothing here imports torch,
transformers or optimum.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.errors import ArtifactError
from edgekit.manifest import MANIFEST_NAME, model_info_from_folder, read_manifest, verify_files
from edgekit.runtimes.base import GenerationConfig, GenerationResult, Model, Timings, TokenEvent

__all__ = ["load", "Model", "GenerationConfig", "GenerationResult", "TokenEvent", "Timings"]


def load(path: str | os.PathLike, threads: int | None = None, context: int | None = None, *, verify: bool = True) -> Model:
    """Load an artifact folder (or a bare ``.gguf`` / ``.onnx`` file) as a :class:`Model`.

    ``threads``: CPU threads for the backend (default: the backend's own choice).
    ``context``: context window in tokens (default: the model's; GGUF: min(model, 4096)).
    ``verify``: check every file against the manifest's sizes and sha256 first.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ArtifactError(f"{p} does not exist: pass an artifact folder, a .gguf or an .onnx file")
    if p.is_dir():
        if not (p / MANIFEST_NAME).is_file():
            raise ArtifactError(
                f"{p} is not an edgekit artifact (no {MANIFEST_NAME}): export one with 'edgekit export', "
                "or pass a .gguf/.onnx file directly"
            )
        manifest = read_manifest(p)
        verify_files(p, manifest, hashes=verify)
        if manifest.format == "gguf":
            from edgekit.runtimes.llamacpp import open_gguf

            return open_gguf(p / manifest.model_file, threads=threads, context=context, manifest=manifest)
        from edgekit.runtimes.onnx import open_onnx

        return open_onnx(p, manifest.model_file, manifest.task, manifest.model, threads=threads, context=context, manifest=manifest)
    if p.suffix == ".gguf":
        from edgekit.runtimes.llamacpp import open_gguf

        return open_gguf(p, threads=threads, context=context)
    if p.suffix == ".onnx":
        from edgekit.runtimes.onnx import infer_task_from_session, open_onnx

        task = infer_task_from_session(p)
        info = model_info_from_folder(p.parent, task)
        return open_onnx(p.parent, p.name, task, info, threads=threads, context=context)
    raise ArtifactError(f"{p} is neither an artifact folder nor a .gguf/.onnx file")
