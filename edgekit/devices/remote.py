"""Commands on a device: the stdlib probe (before setup) and the edgekit agent (after), each one JSON line back.

Commands run in the device's home through its login shell, POSIX ``sh``
syntax, every argument quoted. Requests travel as one JSON argument (probe) or
one JSON line on stdin (agent); none holds a secret.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from edgekit.devices.registry import Device
from edgekit.devices.ssh import Completed, Connection
from edgekit.errors import DeviceError

PROBE_SOURCE = (Path(__file__).parent / "probe.py").read_bytes()


def python_of(device: Device) -> str:
    return device.python or "python3"


def _python_words(device: Device) -> str:
    """``PYTHONPATH=... python`` for a shell command (the path of an unpacked edgekit, relative to $HOME)."""
    py = shlex.quote(python_of(device))
    if device.pythonpath:
        return f'env PYTHONPATH="$HOME"/{shlex.quote(device.pythonpath)} {py}'
    return py


def _last_json(res: Completed, what: str, device: Device) -> dict[str, Any]:
    lines = [ln for ln in res.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        tail = res.stderr.decode("utf-8", "replace").strip().splitlines()
        why = tail[-1][:300] if tail else f"exit status {res.code}"
        raise DeviceError(f"device {device.name}: {what} failed: {why}")
    if "error" in data:
        raise DeviceError(f"device {device.name}: {what} failed: {data['error']}")
    return data


def probe(conn: Connection, op: str, timeout: float = 300.0, python: str | None = None, **req: Any) -> dict[str, Any]:
    """Run the stdlib probe (probe.py) with ``python`` (default: the device's, else python3)."""
    py = shlex.quote(python or python_of(conn.device))
    request = shlex.quote(json.dumps({"op": op, **req}))
    res = conn.run(f"cd && {py} - {request}", input=PROBE_SOURCE, timeout=timeout)
    if res.code == 127:
        raise DeviceError(f"device {conn.device.name}: {python or python_of(conn.device)} not found there: install "
                          "Python 3.10+ or pass the path of one (python=)")
    return _last_json(res, f"probe {op}", conn.device)


def agent(conn: Connection, op: str, timeout: float, **req: Any) -> dict[str, Any]:
    """Run ``python -m edgekit.devices.agent`` with the device's set-up Python; stdin stays open while it runs."""
    line = (json.dumps({"op": op, "remote_dir": conn.device.remote_dir, **req}) + "\n").encode()
    res = conn.run(f"cd && exec {_python_words(conn.device)} -m edgekit.devices.agent", input=line, timeout=timeout,
                   keep_stdin=True)
    return _last_json(res, f"edgekit {op}", conn.device)


def shell(conn: Connection, command: str, what: str, timeout: float = 600.0) -> str:
    """Run ``command`` in the device's home; its stdout, or :class:`DeviceError` with its last stderr line."""
    res = conn.run(f"cd && {command}", timeout=timeout)
    if res.code != 0:
        tail = (res.stderr or res.stdout).decode("utf-8", "replace").strip().splitlines()
        raise DeviceError(f"device {conn.device.name}: {what} failed: {tail[-1][:300] if tail else res.code}")
    return res.stdout.decode("utf-8", "replace")


def check(conn: Connection) -> dict[str, Any]:
    """Facts about the device (probe ``facts``) and, when set up, the edgekit there."""
    facts = probe(conn, "facts", dir=conn.device.remote_dir)
    facts["edgekit"] = None
    if conn.device.python:
        try:
            facts["edgekit"] = agent(conn, "version", timeout=120)
        except DeviceError as exc:
            facts["edgekit_error"] = str(exc)
    return facts
