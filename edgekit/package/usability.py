"""Which execution providers could run an ONNX model on a phone, and the EP settings an app should use.

The counts come from onnxruntime's own mobile-usability checker
(``python -m onnxruntime.tools.check_onnx_model_mobile_usability``, module
``onnxruntime.tools.mobile_helpers.usability_checker``), run the way that command runs it:
the model optimised to the basic level, ONNX shape inference, then for NNAPI, CoreML
NeuralNetwork and CoreML MLProgram the partitions and supported nodes, first as the model
is and, when that is not a clear yes and the model has dynamic inputs, as if its shapes
were fixed. The command only logs; :func:`usability_report` keeps its numbers.

XNNPACK is not in the checker. Its count here is by operator type against the kernels the
XNNPACK EP registers (:data:`XNNPACK_OPS`, from ``onnxruntime/core/providers/xnnpack/
xnnpack_execution_provider.cc``); the EP also requires constant weights and float or
quantized types, so the count is an upper bound. XNNPACK takes single nodes (no device
copies between partitions), so partitions do not matter for it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from edgekit.errors import MissingDependencyError
from edgekit.translate import translated

CHECKER = "onnxruntime.tools.mobile_helpers.usability_checker"
XNNPACK_SOURCE = ("https://github.com/microsoft/onnxruntime/blob/1b38b5828ef20f49ec4a388570205c1e28092200/"
                  "onnxruntime/core/providers/xnnpack/xnnpack_execution_provider.cc")
# (domain, op type) of the XNNPACK EP's kernels; NHWC-domain kernels stand for the ONNX op they replace.
XNNPACK_OPS = frozenset({
    ("ai.onnx", op) for op in (
        "Conv", "ConvTranspose", "MaxPool", "AveragePool", "Softmax", "Resize", "Gemm", "MatMul", "QLinearConv")
} | {("com.microsoft", op) for op in ("QLinearConvTranspose", "QLinearAveragePool", "QLinearSoftmax")})
EP_CHOICES = ("auto", "cpu", "nnapi", "coreml", "xnnpack")
EP_PLATFORMS = {"nnapi": ("android",), "coreml": ("ios",)}


def _info(p) -> dict[str, Any]:
    """The numbers of one ``PartitioningInfo``."""
    return {
        "nodes": p.num_nodes, "supported_nodes": p.num_supported_nodes, "partitions": p.num_partitions,
        "partition_sizes": [len(g) for g in p.supported_groups],
        "unsupported_ops": sorted(p.unsupported_ops),
        "nodes_unsupported_due_to_op": p.nodes_unsupported_due_to_op,
        "nodes_unsupported_due_to_dynamic_shape": p.nodes_unsupported_due_to_dynamic_input,
        "suitability": p.suitability().name,
    }


def _xnnpack(graph) -> dict[str, Any]:
    nodes = list(graph.node)
    taken = [n for n in nodes if ((n.domain or "ai.onnx"), n.op_type) in XNNPACK_OPS]
    return {
        "nodes": len(nodes), "supported_nodes": len(taken),
        "ops": sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in taken}),
        "method": "operator types against the XNNPACK EP's kernel registrations (an upper bound: the EP also "
                  "needs constant weights and float/quantized types)",
        "source": XNNPACK_SOURCE,
    }


def usability_report(model: Path, work: Path) -> dict[str, Any]:
    """Run onnxruntime's mobile-usability checker on ``model`` (temporary files in ``work``) and keep its numbers."""
    try:
        from onnxruntime import __version__ as ort_version
        from onnxruntime.tools.mobile_helpers import usability_checker as uc
        from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime's mobile tools (they need the onnx package)", "export") from exc
    quiet = logging.getLogger("edgekit.package.usability")
    quiet.setLevel(logging.ERROR)
    work.mkdir(parents=True, exist_ok=True)
    try:
        with translated("onnxruntime", "check", name=model.name):  # onnxruntime's, onnx's errors, OSError
            basic = work / model.name
            optimize_model(model, basic, use_external_initializers=True)
            wrapped = ModelProtoWithShapeInfo(basic)
            proto = wrapped.model_with_shape_info
            dynamic_inputs, _ = uc.check_shapes(proto.graph, quiet)
            checks = {
                "NNAPI": uc.check_nnapi_partitions,
                "CoreML NeuralNetwork": lambda m, fixed: uc.check_coreml_partitions(
                    m, fixed, "coreml_supported_neuralnetwork_ops.md"),
                "CoreML MLProgram": lambda m, fixed: uc.check_coreml_partitions(
                    m, fixed, "coreml_supported_mlprogram_ops.md"),
            }
            eps = {}
            for name, check in checks.items():
                entry = _info(check(proto, True))
                entry["with_fixed_shapes"] = None
                if entry["suitability"] != "YES" and dynamic_inputs:  # as the checker does
                    entry["with_fixed_shapes"] = _info(check(proto, False))
                eps[name] = entry
            xnnpack = _xnnpack(proto.graph)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fallback = sorted(set().union(*(set(e["unsupported_ops"]) for e in eps.values())))
    return {
        "tool": f"{CHECKER} (onnxruntime {ort_version}), as python -m onnxruntime.tools."
                "check_onnx_model_mobile_usability runs it: the model optimised to the basic level",
        "model": model.name,
        "dynamic_inputs": [i.name for i in dynamic_inputs],
        "eps": eps,
        "xnnpack": xnnpack,
        "cpu_fallback_ops": fallback,
    }


def choose_eps(report: dict[str, Any], platform: str, ep: str) -> tuple[list[str], str]:
    """The EPs an app should register, in priority order (the CPU EP last), and why.

    ``ep="auto"``: NNAPI (Android) or CoreML (iOS) only when the checker says the model as it is would run
    well there (one or two partitions covering most nodes, its ``YES``); otherwise the CPU EP, which is what
    the checker itself then recommends. An explicit ``ep`` is taken as asked.
    """
    if ep == "cpu":
        return ["CPU"], "asked for: ep=cpu"
    if ep in ("nnapi", "coreml", "xnnpack"):
        return [{"nnapi": "NNAPI", "coreml": "CoreML", "xnnpack": "XNNPACK"}[ep], "CPU"], f"asked for: ep={ep}"
    eps = report["eps"]
    if platform == "android" and eps["NNAPI"]["suitability"] == "YES":
        return ["NNAPI", "CPU"], "onnxruntime's checker: NNAPI should run this model well as it is"
    if platform == "ios":
        for name in ("CoreML MLProgram", "CoreML NeuralNetwork"):
            if eps[name]["suitability"] == "YES":
                return ["CoreML", "CPU"], f"onnxruntime's checker: {name} should run this model well as it is"
    parts = ", ".join(f"{name} {e['partitions']} partitions for {e['supported_nodes']}/{e['nodes']} nodes"
                      for name, e in eps.items())
    return ["CPU"], f"onnxruntime's checker recommends the CPU EP ({parts})"


def ep_settings(eps: list[str], report: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Execution providers with their options and the session options to go with them (runtime.json)."""
    providers: list[dict[str, Any]] = []
    session_entries: dict[str, str] = {}
    intra = threads
    for name in eps:
        if name == "CoreML":
            rank = {"NO": 0, "MAYBE": 1, "YES": 2}
            program = rank[report["eps"]["CoreML MLProgram"]["suitability"]] >= \
                rank[report["eps"]["CoreML NeuralNetwork"]["suitability"]]
            providers.append({"name": "CoreML", "options": {"ModelFormat": "MLProgram" if program else "NeuralNetwork",
                                                            "MLComputeUnits": "ALL"}})
        elif name == "NNAPI":
            providers.append({"name": "NNAPI", "options": {"flags": []}})
        elif name == "XNNPACK":
            # XNNPACK has its own thread pool: onnxruntime's intra-op pool goes to 1 thread without spinning
            providers.append({"name": "XNNPACK", "options": {"intra_op_num_threads": str(threads or 0)}})
            session_entries["session.intra_op.allow_spinning"] = "0"
            intra = 1
        else:
            providers.append({"name": "CPU", "options": {}})
    return {
        "execution_providers": providers,
        "session_options": {"intra_op_num_threads": intra, "inter_op_num_threads": 1, "execution_mode": "sequential"},
        "session_config_entries": session_entries,
    }
