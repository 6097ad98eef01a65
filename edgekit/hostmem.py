"""How much memory this host has and how much a new allocation may take: one reading for every layer.

``/proc/meminfo``'s MemTotal and MemAvailable (the kernel's estimate of what can be allocated
without swapping), each capped by a cgroup v2 memory limit (``memory.max``) when the process runs
under one. Elsewhere (macOS) ``sysctl hw.memsize`` gives the total and the available is unknown.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def meminfo() -> tuple[int | None, int | None]:
    """(total, available) bytes of RAM, honouring a cgroup memory limit; None where unknown."""
    fields: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    total = fields.get("MemTotal")
    if total is None:
        try:
            out = subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5).stdout
            total = int(out.strip()) if out.strip().isdigit() else None
        except (OSError, subprocess.SubprocessError):
            total = None
    avail = fields.get("MemAvailable")
    limit = _read("/sys/fs/cgroup/memory.max").strip()
    if limit.isdigit():
        total = min(total, int(limit)) if total else int(limit)
        avail = min(avail, int(limit)) if avail is not None else None
    return total, avail
