"""Exported and gated candidates, and their host measurements, kept in edgekit's cache between runs.

One folder per candidate key (plan.cache_key: the source's content, format, quantization,
knobs, gate prompts and edgekit version) under ``<cache>/optimize/``:

* ``FORMAT-QUANT/``: the exported artifact, written by the exporter through its own staging folder;
* ``entry.json``: the gate's verdict and the size, written atomically once the export is done.
  A gate that failed is kept too (no artifact): the next run knows the verdict without exporting;
* ``bench/HOST-SETTINGS.json``: one host measurement of the artifact (the bench result with its
  calibration) per machine and bench settings.

An entry counts only when ``entry.json`` is there and, for a passed gate, the artifact's files
still have their recorded sizes and hashes: an export interrupted by Ctrl-C leaves no entry, and a
later run makes it again; an entry that does not count (damaged, half-deleted, edited in place
through a hard link of an optimize OUT) is removed and made again. Finished entries are never
touched by an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import socket
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from edgekit import quants
from edgekit.errors import ArtifactError, ConfigError, QualityGateError
from edgekit.fileio import cache_dir, read_json, write_json_atomic
from edgekit.manifest import GateReport, now_iso
from edgekit.profiler.schema import ArtifactResult
from edgekit.progress import Progress
from edgekit.strict import StrictModel, load_versioned

ENTRY_VERSION = 1


class Entry(StrictModel):
    """A candidate's export and gate, as kept in the cache."""

    schema_version: int = ENTRY_VERSION
    key: str
    format: str
    quant: str
    knobs: dict = Field(default_factory=dict)
    source_sha256: str
    edgekit_version: str
    status: Literal["passed", "gate_failed"]
    gate: GateReport | None = None
    size_bytes: int | None = None
    export_s: float
    created_at: str


def root() -> Path:
    return cache_dir() / "optimize"


def folder(key: str) -> Path:
    return root() / key


def artifact_path(key: str, fmt: str, quant: str) -> Path:
    """Where the artifact of ``key`` is kept (named after the candidate: bench reports label runs by folder name)."""
    return folder(key) / f"{fmt}-{quant}"


def lookup(key: str) -> Entry | None:
    """The finished entry of ``key`` (its artifact checked by size), or None."""
    path = folder(key) / "entry.json"
    try:
        entry = load_versioned(Entry, read_json(path), where=str(path), error=ConfigError)
    except (OSError, ValueError, ConfigError):
        return None
    if entry.key != key:
        return None
    if entry.status == "passed":
        from edgekit.artifact import resolve_artifact

        try:  # sizes and hashes (after the first check, a CRC-32 of each file: about 25 ms per 100 MB)
            resolve_artifact(artifact_path(key, entry.format, entry.quant), check="hashes")
        except ArtifactError:
            return None
    return entry


def _clear(key: str, out: Path) -> None:
    """Remove what is left of an entry that did not count (:func:`lookup`): its verdict and its artifact, whatever
    state they are in (a damaged manifest, a file where the folder was). The cache is edgekit's own, so this is
    the one place it deletes without the artifact guard that protects user folders; measurements stay (same key,
    same artifact) and so do other runs' staging folders (their exporters sweep them)."""
    (folder(key) / "entry.json").unlink(missing_ok=True)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)


def export(key: str, source, fmt: str, quant: str, knobs: dict, source_sha256: str, prompts,
           progress: Progress) -> Entry:
    """Export and gate one candidate into its cache folder; the entry (a failed gate too) is written last."""
    from edgekit.version import __version__

    out = artifact_path(key, fmt, quants.export_quant(fmt, quant).name)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clear(key, out)
    t0 = time.perf_counter()
    try:
        if fmt == "gguf":
            from edgekit.exporters.gguf import export_gguf

            art = export_gguf(source, out, quant=quant, prompts=prompts, force=True, progress=progress, **knobs)
        else:
            from edgekit.exporters.onnx import export_onnx

            art = export_onnx(source, out, quant=quant, prompts=prompts, force=True, progress=progress, **knobs)
        status, gate, size = "passed", art.manifest.gate, art.size_bytes
    except QualityGateError as exc:
        if exc.report is None:
            raise
        status, gate, size = "gate_failed", exc.report, None
    entry = Entry(key=key, format=fmt, quant=quant, knobs=knobs, source_sha256=source_sha256,
                  edgekit_version=__version__, status=status, gate=gate, size_bytes=size,
                  export_s=round(time.perf_counter() - t0, 2), created_at=now_iso())
    write_json_atomic(folder(key) / "entry.json", entry.model_dump(mode="json"))
    return entry


# ---- host measurements -----------------------------------------------------------------

def host_key() -> str:
    """This machine, as far as its measurements go: name, CPU model, architecture, usable CPUs."""
    from edgekit.targets.detect import host_facts

    facts = host_facts()
    text = f"{socket.gethostname()}|{platform.machine()}|{facts['soc']}|{facts['cpus']}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _bench_path(key: str, settings: dict) -> Path:
    blob = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return folder(key) / "bench" / f"{host_key()}-{blob}.json"


def bench_lookup(key: str, settings: dict) -> ArtifactResult | None:
    path = _bench_path(key, settings)
    try:
        result = ArtifactResult.model_validate(read_json(path))
    except (OSError, ValueError):
        return None
    return result if result.status == "ok" and result.calibration is not None else None


def bench_store(key: str, settings: dict, result: ArtifactResult) -> None:
    if result.status != "ok" or result.calibration is None:
        return
    path = _bench_path(key, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, result.model_dump(mode="json"))
