"""``edgekit.json``: the manifest of an artifact folder, and atomic artifact writes.

An artifact is one folder holding the model file(s), the tokenizer and config
files, and ``edgekit.json``. The manifest records where the model came from,
what was done to it, every file with its size and sha256, the versions of the
tools involved, and the quality gate's verdict. It is a pydantic model with
``extra="forbid"`` and a ``schema_version``.

Artifacts are built in a staging folder beside the destination and renamed
into place (:func:`staged_artifact`), so a crash never leaves a half artifact
that looks whole.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgekit.errors import ArtifactError, ConfigError, describe_validation

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgekit.json"
STAGING_MARK = ".edgekit-staging-"

Format = Literal["onnx", "gguf"]
Task = Literal["text-generation", "feature-extraction", "text-classification"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FileEntry(_Strict):
    path: str
    size: int
    sha256: str


class SourceInfo(_Strict):
    kind: Literal["local", "hub"]
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    weights_sha256: str = Field(description="sha256 over the source weight files, in name order")


class Quantization(_Strict):
    method: str = Field(description="the tool that quantized: none | quantize_dynamic | matmul_nbits | float16 | llama.cpp")
    params: dict[str, Any] = Field(default_factory=dict)


class ModelInfo(_Strict):
    """Shape facts the runtime and the profiler need without reading the weights."""

    architecture: str
    n_params: int | None = None
    n_layers: int | None = None
    hidden_size: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    vocab_size: int | None = None
    context_length: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: list[int] = Field(default_factory=list)
    pooling: Literal["mean", "cls", "max", "none"] | None = None
    normalize: bool | None = None
    labels: list[str] | None = None


class GateReport(_Strict):
    status: Literal["passed", "failed", "skipped"]
    kind: Literal["decoder", "encoder", "classifier"]
    precision: str | None = None
    reference: str = Field(description="what the artifact was compared against")
    metrics: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)
    n_prompts: int = 0
    prompts_sha256: str | None = None
    seconds: float = 0.0


class Manifest(_Strict):
    schema_version: int = SCHEMA_VERSION
    format: Format
    task: Task
    precision: str
    quantization: Quantization
    graph_rewrites: list[str] = Field(default_factory=list, description="edgekit's own graph rewrites after tracing (checked by the gate)")
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


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One digest over several files (names and contents, in the given order)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def list_files(folder: Path) -> list[FileEntry]:
    entries = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST_NAME:
            entries.append(FileEntry(path=p.relative_to(folder).as_posix(), size=p.stat().st_size, sha256=sha256_file(p)))
    return entries


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and a rename:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


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
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): re-export the artifact") from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path} has schema_version {version!r}; this edgekit reads version {SCHEMA_VERSION}: re-export the artifact"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(f"{describe_validation(exc, str(path))}; re-export the artifact") from exc


def cache_dir() -> Path:
    """edgekit's cache folder: $EDGEKIT_CACHE, else ~/.cache/edgekit."""
    return Path(os.environ.get("EDGEKIT_CACHE") or Path.home() / ".cache" / "edgekit")


def verify_files(folder: str | os.PathLike, manifest: Manifest, *, hashes: bool = True, use_stamps: bool = True) -> None:
    """Raise :class:`ArtifactError` naming the first file that is missing or differs from the manifest.

    Sizes are always checked. A file's sha256 is recomputed unless this machine already
    verified the same file (same size, mtime and inode) against the same hash: the
    stamps live in ``<cache>/verified/`` so that loading a large artifact again does
    not re-read every byte. ``use_stamps=False`` re-reads every byte (``edgekit inspect``).
    """
    folder = Path(folder).absolute()
    stamps_path = cache_dir() / "verified" / (hashlib.sha256(str(folder).encode()).hexdigest()[:32] + ".json")
    known = _read_optional_json(stamps_path)
    fresh: dict[str, list] = {}
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
        stamp = [entry.sha256, st.st_size, st.st_mtime_ns, st.st_ino]
        if not use_stamps or known.get(entry.path) != stamp:
            if sha256_file(p) != entry.sha256:
                raise ArtifactError(
                    f"{folder}: file '{entry.path}' does not match its sha256 in {MANIFEST_NAME} (modified or corrupt); "
                    "re-export the artifact"
                )
        fresh[entry.path] = stamp
    if hashes and fresh != known:
        with contextlib.suppress(OSError):
            stamps_path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(stamps_path, fresh)


def check_output_path(out: str | os.PathLike, force: bool) -> Path:
    """Validate an artifact destination before any work is done."""
    out = Path(out).expanduser().absolute()
    if out.exists() or out.is_symlink():
        if not force:
            raise ConfigError(f"{out} already exists: choose another -o/--output or pass --force to replace it")
        if not out.is_dir():
            raise ConfigError(f"{out} exists and is not a folder: remove it or choose another -o/--output")
    probe_writable(out, "choose another -o/--output")
    return out


def probe_writable(path: Path, hint: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` could be created: its nearest existing
    ancestor must be a folder we can really write in (``os.access`` says yes to root even
    on read-only file systems, so a temporary folder is made and removed)."""
    probe = Path(path).parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"cannot write {path}: {probe} is not a folder; {hint}")
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=f".{Path(path).name}.probe-"))
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {probe} is not writable ({exc.strerror}); {hint}") from exc


@contextlib.contextmanager
def staged_artifact(out: str | os.PathLike, force: bool) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; on success rename it to ``out``.

    On any exception the staging folder is removed and ``out`` is left as it was.
    With ``force`` an existing ``out`` is replaced only after the new artifact is complete.
    """
    out = check_output_path(out, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{STAGING_MARK}"))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}; choose another -o/--output") from exc
    try:
        yield staging
        if out.exists():
            if not force:
                raise ConfigError(f"{out} appeared while exporting: pass --force to replace it")
            trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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


def _read_optional_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _ids(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int)]
    return []


def model_info_from_folder(folder: Path, task: str, n_params: int | None = None) -> ModelInfo:
    """Shape facts from a Hugging Face folder's config files (config, generation, tokenizer, sentence-transformers)."""
    folder = Path(folder)
    cfg = _read_optional_json(folder / "config.json")
    cfg = {**cfg.get("text_config", {}), **cfg} if isinstance(cfg.get("text_config"), dict) else cfg
    gen = _read_optional_json(folder / "generation_config.json")

    def first(*keys):
        for k in keys:
            if isinstance(cfg.get(k), int):
                return cfg[k]
        return None

    hidden = first("hidden_size", "n_embd", "d_model", "dim")
    heads = first("num_attention_heads", "n_head", "n_heads")
    head_dim = first("head_dim") or (hidden // heads if hidden and heads else None)
    context = first("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
    pooling, normalize, labels = None, None, None
    if task == "feature-extraction":
        st = _read_optional_json(folder / "sentence_bert_config.json")
        if isinstance(st.get("max_seq_length"), int):
            context = min(st["max_seq_length"], context or st["max_seq_length"])
        pool_cfg = _read_optional_json(folder / "1_Pooling" / "config.json")
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
        n_layers=first("num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=hidden,
        n_heads=heads,
        n_kv_heads=first("num_key_value_heads", "n_kv_heads") or heads,
        head_dim=head_dim,
        vocab_size=first("vocab_size"),
        context_length=context,
        bos_token_id=bos if isinstance(bos, int) else None,
        eos_token_ids=eos,
        pooling=pooling,
        normalize=normalize,
        labels=labels,
    )
