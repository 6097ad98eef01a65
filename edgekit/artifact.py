"""What edgekit runs, benches and profiles: an artifact folder, or a bare ``.gguf`` / ``.onnx`` file.

:class:`Artifact` is an exported folder with its manifest (what the exporters
return). :func:`resolve_artifact` is the one place that turns a path given by
a user into the model file, its format, task and shape facts, with the same
errors for every caller (``edgekit.load``, the profiler, ``edgekit bench``).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgekit.errors import ArtifactError
from edgekit.gguf_header import check_gguf_vocab
from edgekit.manifest import MANIFEST_NAME, Manifest, ModelInfo, model_info_from_folder, read_manifest, verify_files
from edgekit.protobuf import read_onnx_io

# the file suffix of each format's bare model file
SUFFIX_FORMAT = {".gguf": "gguf", ".onnx": "onnx"}


@dataclass
class Artifact:
    """An artifact folder on disk and its manifest."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path) -> "Artifact":
        return cls(Path(path), read_manifest(path))

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.manifest.files)


@dataclass(frozen=True)
class ResolvedArtifact:
    """A checked artifact folder or bare model file, and what edgekit knows about it."""

    path: Path  # what was passed: the folder, or the bare file
    folder: Path  # the folder holding the model file (and its tokenizer files)
    model_file: Path
    format: str  # "onnx" | "gguf"
    task: str
    manifest: Manifest | None = None  # None for a bare file
    model: ModelInfo | None = None  # the manifest's; bare .onnx: from the config files beside it; bare .gguf: None

    @property
    def precision(self) -> str | None:
        """The manifest's precision (None for a bare file: read it from the weights)."""
        return self.manifest.precision if self.manifest is not None else None


def resolve_artifact(path: str | os.PathLike, *, check: Literal["model", "sizes", "hashes"] = "model",
                     ) -> ResolvedArtifact:
    """Resolve ``path`` (an artifact folder, a bare .gguf/.onnx file, or ``packaged:NAME``) or raise
    :class:`ArtifactError`.

    ``packaged:NAME`` is a packaged model that runs as it is (``packaged:smollm2-gguf``, see
    :func:`edgekit.packaged.artifact_path`); a packaged name that is a source to export is a ConfigError
    saying so. The result's ``path`` is then the packaged file.

    ``check`` for a folder: "model" only checks the model file is there; "sizes" checks every file's size
    against the manifest, "hashes" also its sha256 (see :func:`edgekit.manifest.verify_files`). A bare
    .onnx file's task is read from its inputs and outputs (this opens an onnxruntime session); a bare
    .gguf file's header is read, and a vocabulary llama.cpp would abort on is refused
    (:func:`edgekit.gguf_header.check_gguf_vocab`).
    """
    if os.fspath(path).startswith("packaged:"):  # the one place a packaged artifact is resolved
        from edgekit.packaged import artifact_path

        path = artifact_path(os.fspath(path))
    p = Path(path).expanduser()
    if not p.exists():
        raise ArtifactError(f"{p} does not exist: pass an artifact folder, a .gguf or an .onnx file")
    if p.is_dir():
        if not (p / MANIFEST_NAME).is_file():
            raise ArtifactError(
                f"{p} is not an edgekit artifact (no {MANIFEST_NAME}): export one with 'edgekit export', "
                "or pass a .gguf/.onnx file directly"
            )
        m = read_manifest(p)
        if check != "model":
            verify_files(p, m, hashes=check == "hashes")
        model_file = p / m.model_file
        if not model_file.is_file():
            raise ArtifactError(f"{p}: model file {m.model_file} is missing; re-export the artifact")
        return ResolvedArtifact(p, p, model_file, m.format, m.task, m, m.model)
    fmt = SUFFIX_FORMAT.get(p.suffix)
    if fmt is None or not p.is_file():
        raise ArtifactError(f"{p} is neither an artifact folder nor a .gguf/.onnx file")
    if fmt == "gguf":
        check_gguf_vocab(p)  # duplicate tokens abort llama.cpp (SIGABRT): refused first (25 ms for SmolLM2's 98 MB)
        return ResolvedArtifact(p, p.parent, p, "gguf", "text-generation")
    task = bare_onnx_task(p)
    return ResolvedArtifact(p, p.parent, p, "onnx", task, model=model_info_from_folder(p.parent, task))


def bare_onnx_task(path: Path) -> str:
    """For a bare .onnx file, from its graph (no onnxruntime): decoder if it takes a KV cache, classifier if it
    outputs 2-D logits, else encoder."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            inputs, outputs = read_onnx_io(buf)
    except (OSError, ValueError, IndexError) as exc:
        raise ArtifactError(f"{path} is not a loadable ONNX model (corrupt or truncated?): {exc}") from exc
    if any(n.startswith("past_key_values.") for n in inputs):
        return "text-generation"
    if outputs.get("logits") == 2:
        return "text-classification"
    return "feature-extraction"
