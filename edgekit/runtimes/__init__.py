"""Local runtimes behind one API. ``load`` picks the backend from the manifest or the file.

Backends import their heavy library inside themselves only (onnxruntime in
``onnx.py``, llama-cpp-python in ``llamacpp.py``); nothing here imports torch,
transformers or optimum.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from edgekit.artifact import resolve_artifact
from edgekit.runtimes.base import GenerationConfig, GenerationResult, Model, Timings, TokenEvent
from edgekit.runtimes.threads import check_threads

__all__ = ["load", "Model", "GenerationConfig", "GenerationResult", "TokenEvent", "Timings"]

log = logging.getLogger("edgekit.runtimes")
_unverified_said: set[str] = set()  # bare files this process has already warned about
_said_lock = threading.Lock()


def load(path: str | os.PathLike, threads: int | None = None, context: int | None = None, *, verify: bool = True) -> Model:
    """Load an artifact folder (or a bare ``.gguf`` / ``.onnx`` file) as a :class:`Model`.

    ``threads``: CPU threads for the backend (default: the backend's own choice; more than the
    CPUs this process may use warns, absurd counts raise ConfigError: see ``runtimes/threads.py``).
    ``context``: context window in tokens (default: the model's; GGUF: min(model, 4096)).
    ``verify``: check every file against the manifest's sizes and sha256 first. A bare file has
    no manifest, so nothing can be verified: the first load of each one in a process logs a
    warning (``edgekit.runtimes``) saying so.
    """
    check_threads(threads, warn=False)  # before any work; the backend warns about oversubscription
    art = resolve_artifact(path, check="hashes" if verify else "sizes")
    if art.manifest is None and verify:
        warn_unverified(art.model_file)
    if art.format == "gguf":
        from edgekit.runtimes.llamacpp import open_gguf

        return open_gguf(art.model_file, threads=threads, context=context, manifest=art.manifest)
    from edgekit.runtimes.onnx import open_onnx

    return open_onnx(art.folder, art.model_file.name, art.task, art.model, threads=threads, context=context,
                     manifest=art.manifest)


def warn_unverified(model_file: Path) -> None:
    """Say once per process per file that a bare model file cannot be verified."""
    key = str(Path(model_file).resolve())
    with _said_lock:
        if key in _unverified_said:
            return
        _unverified_said.add(key)
    log.warning("%s is unverified: a bare %s file has no edgekit.json manifest (no recorded hashes), so damage to "
                "it cannot be detected; export an artifact folder with 'edgekit export' to verify it on every load",
                model_file, Path(model_file).suffix.lstrip("."))
