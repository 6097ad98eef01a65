"""``package.json``: what a mobile package holds, for the app that bundles it and for ``edgekit inspect``.

A :class:`PackageManifest` (strict, versioned like every file edgekit writes) names the
model file and the runtime settings file, the context and threads chosen, the tokenizer,
the chat template (Jinja and per-role strings), recommended generation settings, the
quality gate carried over from the artifact, the memory check and every file with its
size and sha256. The runtime's own settings (execution providers, llama.cpp parameters)
live in ``runtime.json``, the EP report in ``ep_report.json`` and the sizes in
``size_report.json``, each plain JSON an app can read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from edgekit.errors import ArtifactError
from edgekit.fileio import read_json, sha256_file
from edgekit.manifest import FileEntry, GateReport, ModelInfo, SourceInfo
from edgekit.names import Format, Task
from edgekit.strict import StrictModel, load_versioned

PACKAGE_NAME = "package.json"
SCHEMA_VERSION = 1
PLATFORMS = ("android", "ios", "generic")
Platform = Literal[PLATFORMS]


class SpecialToken(StrictModel):
    text: str | None = None
    id: int | None = None


class TokenizerInfo(StrictModel):
    file: str | None = Field(None, description="tokenizer.json (Hugging Face tokenizers format), when included")
    config_file: str | None = Field(None, description="tokenizer_config.json, for libraries that read it")
    in_model_file: bool = Field(False, description="the model file carries its own vocabulary (GGUF)")
    add_special_tokens: bool = Field(description="a plain prompt gets the tokenizer's special tokens (a decoder's bos, "
                                     "BERT's [CLS]/[SEP]); a chat prompt gets them from the template (chat.begin)")
    special_tokens: dict[str, SpecialToken] = Field(default_factory=dict)
    eos_token_ids: list[int] = Field(default_factory=list, description="ids that end a turn")
    note: str = ""


class RoleStrings(StrictModel):
    prefix: str
    suffix: str


class ChatInfo(StrictModel):
    template: str = Field(description="the model's Jinja chat template (Hugging Face format)")
    begin: str = ""
    roles: dict[str, RoleStrings] = Field(default_factory=dict)
    generation_prompt: str | None = None
    preamble_without_system: str | None = None
    exact: bool = Field(description="the strings rebuild the template's output exactly")
    note: str = ""


class MemoryCheck(StrictModel):
    weights_bytes: int
    kv_bytes_per_position: int = 0
    context: int | None = None
    kv_bytes: int = 0
    total_bytes: int
    budget_bytes: int | None = None
    target: str | None = None
    fits: bool | None = None
    note: str = ""


class ArtifactRef(StrictModel):
    path: str
    created_at: str
    precision: str
    source: SourceInfo
    manifest_sha256: str


class PackageManifest(StrictModel):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["edgekit-package"] = "edgekit-package"
    platform: Platform
    name: str
    format: Format
    task: Task
    precision: str
    model_file: str
    runtime: Literal["onnxruntime", "llama.cpp"]
    runtime_config: str = "runtime.json"
    model: ModelInfo
    context: int | None = Field(description="decoders: the context to allocate; encoders: the longest input")
    threads: int | None
    threads_source: str
    target: str | None = None
    tokenizer: TokenizerInfo
    chat: ChatInfo | None = None
    generation: dict[str, Any] | None = Field(None, description="recommended generation settings (decoders)")
    gate: GateReport
    stage_gates: list[GateReport] = Field(default_factory=list)
    memory: MemoryCheck
    sizes: dict[str, Any] = Field(description="model, package and estimated runtime bytes (size_report.json)")
    artifact: ArtifactRef
    files: list[FileEntry]
    versions: dict[str, str]
    created_at: str


def is_package(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / PACKAGE_NAME).is_file()


def read_package(folder: str | os.PathLike, *, verify: bool = True) -> PackageManifest:
    """The manifest of a package folder; with ``verify``, every file's size and sha256 checked against it."""
    folder = Path(folder)
    path = folder / PACKAGE_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder} is not an edgekit package (no {PACKAGE_NAME}): make one with 'edgekit package'")
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): package the artifact again") from exc
    m = load_versioned(PackageManifest, data, where=str(path), error=ArtifactError,
                       hint="package the artifact again", version_required=True)
    if verify:
        for entry in m.files:
            p = folder / entry.path
            if not p.is_file():
                raise ArtifactError(f"{folder}: file '{entry.path}' listed in {PACKAGE_NAME} is missing; package again")
            if p.stat().st_size != entry.size or sha256_file(p) != entry.sha256:
                raise ArtifactError(f"{folder}: file '{entry.path}' does not match its size and sha256 in "
                                    f"{PACKAGE_NAME} (modified or corrupt); package again")
    return m
