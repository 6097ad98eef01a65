"""``edgekit.json``: the manifest of an artifact folder; reading and verifying it.

An artifact is one folder holding the model file(s), the tokenizer and config
files, and ``edgekit.json``. The manifest records where the model came from,
what was done to it, every file with its size and sha256, the versions of the
tools involved, and the quality gate's verdict. It is a :class:`StrictModel`
(unknown keys refused) with a ``schema_version``.

Artifacts are built in a staging folder beside the destination and renamed
into place (:func:`edgekit.fileio.staged_artifact`), so a crash never leaves a
half artifact that looks whole.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from edgekit.errors import ArtifactError
from edgekit.families import read_shape
from edgekit.fileio import (
    VerifiedStamps,
    crc32_file,
    read_json,
    read_json_dict,
    sha256_and_crc32,
    sha256_file,
    write_json_atomic,
)
from edgekit.names import Format, Kind, Task
from edgekit.strict import StrictModel, load_versioned

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgekit.json"


class FileEntry(StrictModel):
    path: str
    size: int
    sha256: str


class SourceInfo(StrictModel):
    kind: Literal["local", "hub"]
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    weights_sha256: str = Field(description="sha256 over the source weight files, in name order")


class Quantization(StrictModel):
    method: str = Field(description="the tool that quantized: none | quantize_dynamic | matmul_nbits | float16 | llama.cpp")
    params: dict[str, Any] = Field(default_factory=dict)


class ModelInfo(StrictModel):
    """Shape facts the runtime and the profiler need without reading the weights."""

    architecture: str
    n_params: int | None = None
    n_layers: int | None = None
    hidden_size: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    tokenizer_size: int | None = Field(None, description="tokens in the artifact's tokenizer.json at export "
                                       "(added tokens included); the runtime refuses one of another size")
    context_length: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: list[int] = Field(default_factory=list)
    pooling: Literal["mean", "cls", "max", "none"] | None = None
    normalize: bool | None = None
    labels: list[str] | None = None


class GateReport(StrictModel):
    status: Literal["passed", "failed", "skipped"]
    kind: Kind
    precision: str | None = None
    reference: str = Field(description="what the artifact was compared against")
    metrics: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    n_prompts: int = 0
    prompts_sha256: str | None = None
    seconds: float = 0.0


class Manifest(StrictModel):
    schema_version: int = SCHEMA_VERSION
    format: Format
    task: Task
    precision: str
    quantization: Quantization
    graph_rewrites: list[str] = Field(default_factory=list, description="edgekit's own graph rewrites after tracing (checked by the gate)")
    runtimes: list[str] = Field(default_factory=list, description="the runtimes that can load the artifact as it is "
                                "(e.g. edgekit, onnxruntime-genai); empty: not recorded")
    model_file: str
    model: ModelInfo
    source: SourceInfo
    files: list[FileEntry]
    versions: dict[str, str]
    gate: GateReport
    stage_gates: list[GateReport] = Field(default_factory=list, description="gates of earlier stages (fp32 before quantization)")
    created_at: str

    def file(self, rel: str) -> FileEntry:
        for f in self.files:
            if f.path == rel:
                return f
        raise KeyError(rel)


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def list_files(folder: Path) -> list[FileEntry]:
    entries = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            entries.append(FileEntry(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=sha256_file(p)))
    return entries


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json_atomic(Path(folder) / MANIFEST_NAME, manifest.model_dump(mode="json"))


def read_manifest(folder: str | os.PathLike) -> Manifest:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.exists():
        raise ArtifactError(f"{folder} does not exist: pass an artifact folder made by 'edgekit export'")
    if not folder.is_dir() or not path.is_file():
        raise ArtifactError(f"{folder} is not an edgekit artifact (no {MANIFEST_NAME}): export one with 'edgekit export'")
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8, nested or numbers too long
        raise ArtifactError(f"{path} is not valid JSON ({exc}): re-export the artifact") from exc
    return load_versioned(Manifest, data, where=str(path), error=ArtifactError, hint="re-export the artifact",
                          version_required=True)


def verify_files(folder: str | os.PathLike, manifest: Manifest, *, hashes: bool = True, use_stamps: bool = True) -> None:
    """Raise :class:`ArtifactError` naming the first file that is missing or differs from the manifest.

    Sizes are always checked. The first time this machine sees a file (or after its size,
    mtime or inode changed) its sha256 is compared with the manifest's; the stamp recorded
    then (``<cache>/verified/``, see :class:`~edgekit.fileio.VerifiedStamps`) carries the
    file's CRC-32, and every later load recomputes that instead (about 25 ms per 100 MB
    against 55 ms for sha256), so damage that keeps the size and mtime (bit rot, an
    in-place write that restores the mtime) is refused on the next load as well.
    ``use_stamps=False`` recomputes every sha256 (``edgekit inspect``).
    """
    folder = Path(folder).absolute()
    stamps = VerifiedStamps(folder)
    for entry in manifest.files:
        p = folder / entry.path
        if not p.is_file():
            raise ArtifactError(f"{folder}: file '{entry.path}' listed in {MANIFEST_NAME} is missing; re-export the artifact")
        st = p.stat()
        if st.st_size != entry.size:
            raise ArtifactError(
                f"{folder}: file '{entry.path}' is {st.st_size} bytes but {MANIFEST_NAME} says {entry.size}"
                " (truncated or replaced); re-export the artifact"
            )
        if not hashes:
            continue
        stamp = stamps.stamp(entry.sha256, st)
        known = stamps.fast_digest(entry.path) if use_stamps and stamps.is_known(entry.path, stamp) else None
        if known is not None:
            fast = crc32_file(p)
            if fast != known:
                raise ArtifactError(
                    f"{folder}: file '{entry.path}' changed on disk since it was verified (same size and modification "
                    "time, different content: damaged storage or an in-place write); re-export or re-download the artifact"
                )
        else:
            sha, fast = sha256_and_crc32(p)
            if sha != entry.sha256:
                raise ArtifactError(
                    f"{folder}: file '{entry.path}' does not match its sha256 in {MANIFEST_NAME} (modified or corrupt); "
                    "re-export the artifact"
                )
        stamps.record(entry.path, stamp, fast)
    if hashes:
        stamps.save()


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones are left out)."""
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def model_info_from_folder(folder: Path, task: str, n_params: int | None = None,
                           config: dict[str, Any] | None = None) -> ModelInfo:
    """Shape facts from a Hugging Face folder's config files (config, generation, tokenizer, sentence-transformers);
    ``config``: its config.json when the caller has read it already."""
    folder = Path(folder)
    cfg = config if config is not None else read_json_dict(folder / "config.json")
    cfg = {**cfg.get("text_config", {}), **cfg} if isinstance(cfg.get("text_config"), dict) else cfg
    gen = read_json_dict(folder / "generation_config.json")

    shape = read_shape(cfg)
    context = shape.context
    pooling, normalize, labels = None, None, None
    if task == "feature-extraction":
        st = read_json_dict(folder / "sentence_bert_config.json")
        if isinstance(st.get("max_seq_length"), int):
            context = min(st["max_seq_length"], context or st["max_seq_length"])
        pool_cfg = read_json_dict(folder / "1_Pooling" / "config.json")
        pooling = "mean"
        if pool_cfg.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif pool_cfg.get("pooling_mode_max_tokens"):
            pooling = "max"
        modules = folder / "modules.json"
        try:
            normalize = modules.is_file() and any("Normalize" in str(m.get("type", "")) for m in read_json(modules))
        except (OSError, ValueError, AttributeError):
            normalize = False
    if task == "text-classification" and isinstance(cfg.get("id2label"), dict):
        id2label = cfg["id2label"]
        labels = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))]
    eos = _ids(gen.get("eos_token_id")) or _ids(cfg.get("eos_token_id"))
    bos = gen.get("bos_token_id", cfg.get("bos_token_id"))
    return ModelInfo(
        architecture=str(cfg.get("model_type", "unknown")),
        n_params=n_params,
        n_layers=shape.n_layers,
        hidden_size=shape.hidden,
        n_heads=shape.n_heads,
        n_kv_heads=shape.n_kv_heads,
        head_dim=shape.head_dim,
        vocab_size=shape.vocab,
        context_length=context,
        bos_token_id=bos if isinstance(bos, int) else None,
        eos_token_ids=eos,
        pooling=pooling,
        normalize=normalize,
        labels=labels,
    )
