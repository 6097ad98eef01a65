"""Push an artifact to a device once: content-addressed, checked for free disk first, resumable.

An artifact's files and their sha256 (the manifest's, or hashed here for a bare
file) name its folder on the device, ``~/.edgekit/artifacts/<digest>/``. A
folder whose ``.edgekit-verified`` marker lists the same hashes is not pushed
again. Otherwise the bytes still missing are compared with the free space the
device reports (``df``) before anything is sent; each file goes up as
``NAME.part`` and is renamed when whole, so a dropped connection leaves a part
that the next push continues from its size; at the end the device hashes what it
received and writes the marker.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.artifact import ResolvedArtifact
from edgekit.devices import remote
from edgekit.devices.ssh import Connection
from edgekit.errors import DeviceError
from edgekit.fileio import sha256_file
from edgekit.manifest import MANIFEST_NAME

MARKER = ".edgekit-verified"
SIDE_FILES = (".json", ".txt", ".model", ".jinja")  # a bare .onnx's tokenizer and config files beside it


def is_disk_full(exc: DeviceError) -> bool:
    """Whether ``exc`` refused a push for lack of free disk on the device (nothing was sent)."""
    return getattr(exc, "failure", None) == "disk_full"


@dataclass
class PushResult:
    remote_path: str  # the artifact on the device (folder, or the bare model file), relative to its home
    skipped: bool
    bytes_sent: int = 0
    resumed_bytes: int = 0
    files: list[str] = field(default_factory=list)


def artifact_files(art: ResolvedArtifact) -> dict[str, tuple[Path, int, str]]:
    """{path relative to the artifact folder: (local path, size, sha256)} of what a run needs."""
    out: dict[str, tuple[Path, int, str]] = {}
    if art.manifest is not None:
        for f in art.manifest.files:
            out[f.path] = (art.folder / f.path, f.size, f.sha256)
        man = art.folder / MANIFEST_NAME
        out[MANIFEST_NAME] = (man, man.stat().st_size, sha256_file(man))
        return out
    names = [art.model_file]
    if art.format == "onnx":
        names += [p for p in sorted(art.folder.iterdir()) if p.is_file() and p != art.model_file and
                  (p.name.startswith(art.model_file.name) or p.suffix in SIDE_FILES) and p.stat().st_size < 64 << 20]
    for p in names:
        out[p.name] = (p, p.stat().st_size, sha256_file(p))
    return out


def digest_of(files: dict[str, tuple[Path, int, str]]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel][2]}\n".encode())
    return h.hexdigest()[:20]


def push_artifact(conn: Connection, art: ResolvedArtifact, on_bytes=None) -> PushResult:
    """Make the device hold ``art``; a :class:`DeviceError` (:func:`is_disk_full`) before sending anything when it
    cannot fit."""
    files = artifact_files(art)
    root = f"{conn.device.remote_dir}/artifacts/{digest_of(files)}"
    target = root if art.manifest is not None else f"{root}/{art.model_file.name}"
    expected = {rel: sha for rel, (_p, _s, sha) in files.items()}
    marker = conn.stat_size(f"{root}/{MARKER}")
    if marker is not None and _marker_matches(conn, root, expected):
        return PushResult(target, skipped=True)
    have: dict[str, int] = {}
    for rel, (_p, size, _sha) in files.items():
        done = conn.stat_size(f"{root}/{rel}")
        if done == size:
            have[rel] = size
        else:
            part = conn.stat_size(f"{root}/{rel}.part") or 0
            have[rel] = part if part <= size else 0
    missing = sum(size - have[rel] for rel, (_p, size, _s) in files.items())
    free = remote.probe(conn, "free", dir=conn.device.remote_dir)["free_bytes"]
    if missing > free:
        exc = DeviceError(f"device {conn.device.name}: {art.path.name} needs {missing / 1e6:,.0f} MB more on the "
                            f"device, which has {free / 1e6:,.0f} MB free in ~/{conn.device.remote_dir}: free some "
                            "space there (or remove old artifacts in ~/.edgekit/artifacts); nothing was pushed")
        exc.failure = "disk_full"
        raise exc
    result = PushResult(target, skipped=False, resumed_bytes=sum(v for v in have.values()))
    for rel, (local, size, _sha) in sorted(files.items()):
        if have[rel] == size and conn.stat_size(f"{root}/{rel}") == size:
            continue
        conn.makedirs(str(Path(f"{root}/{rel}").parent))
        result.bytes_sent += conn.push_file(local, f"{root}/{rel}", size, on_bytes)
        result.files.append(rel)
    bad = remote.probe(conn, "verify", root=root, files=expected)["bad"]
    if bad:
        raise DeviceError(f"device {conn.device.name}: {', '.join(bad)} of {art.path.name} arrived damaged (sha256 "
                          "differs) and was removed: run again to push it anew")
    return result


def _marker_matches(conn: Connection, root: str, expected: dict[str, str]) -> bool:
    out = remote.shell(conn, f"cat {shlex.quote(root + '/' + MARKER)}", "reading the pushed artifact's marker", timeout=60)
    try:
        return json.loads(out) == expected
    except ValueError:
        return False
