"""``edgekit.optimize``: what to ship for a device, chosen across GGUF and ONNX under a quality floor.

    import edgekit
    result = edgekit.optimize("packaged:smollm2", target="raspberry-pi-5", min_top1=0.85, out="ship")
    print(result.choice.label, result.artifact)          # e.g. gguf-q6_k ship/artifact
    for row in result.table():                            # every candidate: gate, size, speed, status
        print(row)

The modules: plan.py (candidates, shape-based estimates, pruning before export), cache.py
(exports and host measurements kept between runs), decide.py (constraints, objective, choice,
Pareto front), run.py (the run), report.py (Markdown, PNG, JSON, the OUT folder), view.py
(the candidates and the step each is in), schema.py (the JSON report).
"""

from __future__ import annotations

import sys
import types

from edgekit.optimize.run import OptimizeResult, optimize
from edgekit.optimize.schema import CandidateRecord, OptimizeReport

__all__ = ["optimize", "OptimizeResult", "OptimizeReport", "CandidateRecord"]


class _CallableModule(types.ModuleType):
    """``edgekit.optimize`` is this module once any of its submodules was imported (Python binds a package's
    submodule over the lazy function of the same name): calling it calls :func:`optimize`, as edgekit.package does."""

    def __call__(self, *args, **kwargs) -> OptimizeResult:
        return optimize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
