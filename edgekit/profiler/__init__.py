"""The profiler: measure artifacts per run in fresh processes, predict for devices not attached, report.

* :func:`bench` (bench.py): runs, medians, peak RSS from ``wait4``, host calibration and predictions;
  with ``device=`` (api.py) the same runs on devices over SSH (edgekit/devices).
* :func:`predict` (api.py): decode/prefill tokens/s and memory need on a target, from an artifact or from
  a parameter count and a quantization.
* report.py: the JSON report's Markdown table and PNG chart.

``bench`` and ``predict`` are bound here eagerly: the submodule ``bench`` would otherwise shadow the
function of the same name once imported. Nothing here imports torch, transformers or optimum.
"""

from __future__ import annotations

import edgekit.profiler.bench  # noqa: F401  (the submodule first: the name ``bench`` below is the function)
from edgekit.profiler.api import bench, predict
from edgekit.profiler.roofline import Calibration, Prediction
from edgekit.profiler.schema import BenchReport
from edgekit.profiler.shape import ModelShape

__all__ = ["bench", "predict", "BenchReport", "Prediction", "Calibration", "ModelShape"]
