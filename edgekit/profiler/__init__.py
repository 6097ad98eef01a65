"""The profiler: measure artifacts per run in fresh processes, predict for devices not attached, report.

* :func:`bench` (bench.py): runs on this machine, medians, peak RSS from ``wait4``, host calibration and
  predictions. ``edgekit.bench`` (:func:`edgekit.devices.api.bench`) adds ``device=``: the same runs on
  devices over SSH; the profiler never imports ``edgekit.devices``, which sits above it.
* :func:`predict` (api.py): decode/prefill tokens/s and memory need on a target, from an artifact or from
  a parameter count and a quantization.
* report.py: the JSON report's Markdown table and PNG chart.

``bench`` and ``predict`` are bound here eagerly: the submodule ``bench`` would otherwise shadow the
function of the same name once imported. Nothing here imports torch, transformers or optimum.
"""

from __future__ import annotations

import edgekit.profiler.bench  # noqa: F401  (the submodule first: the name ``bench`` below is the function)
from edgekit.profiler.api import predict
from edgekit.profiler.bench import bench
from edgekit.profiler.roofline import Calibration, Prediction
from edgekit.profiler.schema import BenchReport
from edgekit.profiler.shape import ModelShape

__all__ = ["bench", "predict", "BenchReport", "Prediction", "Calibration", "ModelShape"]
