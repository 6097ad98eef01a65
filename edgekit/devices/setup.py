"""``devices setup``: put this edgekit on a device, runtime side only, from a wheel built here.

The wheel is built once per source state (``pip wheel --no-deps`` of a copy of
the checkout, cached under ``<cache>/wheels/<digest>/``) and pushed to
``~/.edgekit/wheels/<digest>/`` on the device. Then either

* a private virtual environment ``~/.edgekit/venv`` gets the wheel with its
  runtime dependencies (onnxruntime, tokenizers, numpy ...; with ``gguf`` also
  llama-cpp-python; never torch: the wheel's base requirements hold none), from
  the device's own package index; or
* with ``python=PATH``, an existing environment on the device is used as it is:
  the wheel is unpacked into ``~/.edgekit/lib/<digest>`` and put first on that
  Python's path for edgekit's commands only; nothing is installed into it.

A device already holding this build is a cache hit: nothing is pushed.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekit.devices import remote
from edgekit.devices.registry import Device, get_device, update_device
from edgekit.devices.ssh import Connection, connect
from edgekit.errors import ConfigError, DeviceError
from edgekit.fileio import cache_dir
from edgekit.version import __version__

SOURCE_SUFFIXES = {".py", ".toml", ".jsonl", ".json", ".typed"}
REQUIRED = ("numpy", "onnxruntime", "tokenizers")  # the runtime side a run needs (llama_cpp: for GGUF)


def source_root() -> Path:
    root = Path(__file__).resolve().parents[2]  # edgekit/devices/setup.py -> the folder holding edgekit/
    if not (root / "pyproject.toml").is_file():
        raise ConfigError("this edgekit is not installed from a source checkout, so no wheel can be built here: "
                          "install it editable (pip install -e .) from a checkout")
    return root


def _source_files(root: Path) -> list[Path]:
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted(p for p in (root / "edgekit").rglob("*")
                    if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)
    return [f for f in files if f.is_file()]


def build_digest(root: Path | None = None) -> str:
    """16 hex digits over this edgekit's source files: the build a device must hold."""
    root = root or source_root()
    h = hashlib.sha256()
    for f in _source_files(root):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_wheel() -> tuple[Path, str]:
    """(the wheel of this edgekit, its build digest), built on first use and cached."""
    root = source_root()
    digest = build_digest(root)
    folder = cache_dir() / "wheels" / digest
    found = sorted(folder.glob("edgekit-*.whl")) if folder.is_dir() else []
    if found:
        return found[0], digest
    with tempfile.TemporaryDirectory(prefix="edgekit-wheel-") as tmp:
        src = Path(tmp) / "src"
        for f in _source_files(root):  # a copy: the build writes build/ and *.egg-info beside the sources
            dest = src / f.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(Path(tmp) / "out"),
               str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = sorted((Path(tmp) / "out").glob("edgekit-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = (proc.stderr or proc.stdout).strip().splitlines()
            raise DeviceError(f"building the edgekit wheel failed: {tail[-1] if tail else proc.returncode}")
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / wheels[0].name
        shutil.copy2(wheels[0], str(final) + ".tmp")
        Path(str(final) + ".tmp").replace(final)
    return final, digest


def _installed_build_ok(conn: Connection, device: Device) -> dict[str, Any] | None:
    try:
        info = remote.agent(conn, "version", timeout=120)
    except DeviceError:
        return None
    return info if info.get("edgekit") == __version__ else None


def install(conn: Connection, *, python: str | None = None, gguf: bool = True, progress=None) -> dict[str, Any]:
    """Make ``conn.device`` run this edgekit build (a cache hit when it already does); the device record is updated."""
    device = conn.device
    wheel, digest = build_wheel()
    mode = "existing" if python else "venv"
    want_python = python or f"{device.remote_dir}/venv/bin/python"
    same_mode = (device.pythonpath is not None) == (mode == "existing") and device.python == want_python
    if device.build == digest and same_mode:
        info = _installed_build_ok(conn, device)
        if info is not None:
            return {"device": device.name, "mode": mode, "python": device.python, "build": digest, "cached": True,
                    "edgekit": info, "installed": [], "bytes_sent": 0}
    sent0 = conn.bytes_sent
    facts = remote.probe(conn, "facts", python=python or "python3", dir=device.remote_dir)
    major, minor = (int(x) for x in facts["python"].split(".")[:2])
    if (major, minor) < (3, 10):
        raise DeviceError(f"device {device.name}: Python {facts['python']} at {facts['python_path']} is too old: "
                          "edgekit needs 3.10+; pass python= with a newer one")
    wheel_dir = f"{device.remote_dir}/wheels/{digest}"
    conn.makedirs(wheel_dir)
    remote_wheel = f"{wheel_dir}/{wheel.name}"
    if conn.stat_size(remote_wheel) != wheel.stat().st_size:
        conn.push_file(wheel, remote_wheel, wheel.stat().st_size)
    installed: list[str] = []
    if mode == "existing":
        lib = f"{device.remote_dir}/lib/{digest}"
        remote.probe(conn, "unpack", python=python, wheel=remote_wheel, dest=lib)
        device = device.model_copy(update={"python": python, "pythonpath": lib})
    else:
        venv = f"{device.remote_dir}/venv"
        py = f"{venv}/bin/python"
        q = shlex.quote
        if conn.stat_size(py) is None:
            remote.shell(conn, f"python3 -m venv {q(venv)}", "creating the virtual environment")
            spec = f"{remote_wheel}[gguf]" if gguf else remote_wheel
            remote.shell(conn, f"{q(py)} -m pip install -q {q(spec)}", "pip install (runtime side)", timeout=3600)
        remote.shell(conn, f"{q(py)} -m pip install -q --no-deps --force-reinstall {q(remote_wheel)}",
                     "pip install of the edgekit wheel")
        listing = remote.shell(conn, f"{q(py)} -m pip list --format=freeze", "pip list")
        installed = [ln.strip() for ln in listing.splitlines() if ln.strip()]
        device = device.model_copy(update={"python": py, "pythonpath": None})
    conn.device = device
    info = remote.agent(conn, "version", timeout=120)
    if info.get("edgekit") != __version__:
        raise DeviceError(f"device {device.name}: edgekit {info.get('edgekit')} answers there, not {__version__}")
    missing = [m for m in REQUIRED if not info["runtimes"].get(m)]
    if missing:
        raise DeviceError(f"device {device.name}: the Python at {device.python} lacks {', '.join(missing)}: install "
                          "them there, or run setup without python= for a private environment")
    device = device.model_copy(update={"build": digest, "edgekit_version": __version__})
    conn.device = device
    update_device(device)
    return {"device": device.name, "mode": mode, "python": device.python, "build": digest, "cached": False,
            "edgekit": info, "installed": installed, "bytes_sent": conn.bytes_sent - sent0}


def setup_device(name: str, *, python: str | None = None, gguf: bool = True, accept_new_host_key: bool = False,
                 progress=None) -> dict[str, Any]:
    """Set ``name`` up for device runs; what was installed (``cached`` when it already was)."""
    device = get_device(name)
    with connect(device, accept_new_host_key=accept_new_host_key) as conn:
        return install(conn, python=python, gguf=gguf, progress=progress)
