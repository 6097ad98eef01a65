"""``edgekit.bench``: bench artifacts on this machine, or with ``device=`` on registered devices over SSH.

It sits here, above the profiler (which never imports ``edgekit.devices``), and imports the SSH side only
when a device is named, so a bench on this machine needs no ``[device]`` extra.
"""

from __future__ import annotations

import os
from typing import Sequence

from edgekit.profiler.bench import bench as bench_here
from edgekit.profiler.schema import BenchReport


def bench(artifacts: Sequence[str | os.PathLike], *, device: str | Sequence[str] = (), **options) -> BenchReport:
    """Bench artifacts on this machine (:func:`edgekit.profiler.bench.bench`), or with ``device=`` (a registered
    device name or several) on those devices over SSH, in parallel (:func:`edgekit.devices.bench.bench_devices`:
    measured there, with edgekit's prediction for each device and its error). Same options, same report schema.
    """
    if not device:
        return bench_here(artifacts, **options)
    from edgekit.devices.bench import bench_devices

    return bench_devices(artifacts, [device] if isinstance(device, str) else list(device), **options)
