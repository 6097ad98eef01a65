"""ONNX models in ORT format, by onnxruntime's own converter, and the reduced-operator build that runs them.

ORT format (``.ort``) is what ONNX Runtime Mobile loads fastest and what a minimal build
(``--minimal_build``) requires: the graph is optimised once, here, and stored as a
flatbuffer. :func:`convert_to_ort` calls ``onnxruntime.tools.convert_onnx_models_to_ort``
(the same code as ``python -m onnxruntime.tools.convert_onnx_models_to_ort``):

* optimisation level "all" (the tool's default) for ``target_platform="arm"`` on Android
  and iOS, which keeps out the x86-only NCHWc layout and lets QDQ nodes fuse into int8
  kernels as ARM cores run them; ``generic`` packages leave the platform unset (portable);
* style "Fixed" when the CPU EP runs the model (optimisations baked in), "Runtime" when a
  compiling EP (NNAPI, CoreML) is recommended: basic optimisations are saved and the rest
  replayed at load time for the nodes the EP does not take (ONNX Runtime's own guidance);
* ``enable_type_reduction``: the operator config lists each kernel's types too, so a
  reduced build compiles only those (``--enable_reduced_operator_type_support``).

The converter runs on a folder of links to the artifact's model files inside the staging
folder: the Runtime style writes a temporary folder beside its input, never into the artifact.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import ExportError, MissingDependencyError
from edgekit.translate import translate

ORT_MODEL = "model.ort"
OPS_CONFIG = "required_operators.config"


@dataclass
class OrtConversion:
    model: Path  # the .ort file in the package
    config: Path  # required_operators.config
    style: str  # "Fixed" | "Runtime"
    target_platform: str | None
    operators: dict[str, dict[int, set[str]]] = field(default_factory=dict)  # domain -> opset -> op types

    @property
    def op_types(self) -> set[tuple[str, str]]:
        """(domain, op type) of every kernel the model needs."""
        return {(d, op) for d, sets in self.operators.items() for ops in sets.values() for op in ops}


def _link_model_files(model: Path, work: Path) -> Path:
    """Links (copies where links are not allowed) to ``model`` and its external-data files inside ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    for p in model.parent.iterdir():
        if p.is_file() and p.name.startswith(model.name):  # model.onnx, model.onnx_data, model.onnx.data
            try:
                os.symlink(p.resolve(), work / p.name)
            except OSError:
                shutil.copy2(p, work / p.name)
    return work / model.name


@contextlib.contextmanager
def _quiet_converter():
    """The converter prints progress on stdout and logs the config path: keep both out of the CLI's output."""
    buf = io.StringIO()
    logger = logging.getLogger("ort_format_model.utils")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        logger.setLevel(level)


def convert_to_ort(model: Path, stage: Path, *, platform: str, runtime_style: bool = False) -> OrtConversion:
    """Convert ``model`` (an .onnx file) into ``stage/model.ort`` and ``stage/required_operators.config``."""
    try:
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime's tools (onnxruntime.tools, with flatbuffers)", None) from exc
    work = stage / ".ort-work"
    source = _link_model_files(model, work / "in")
    style = OptimizationStyle.Runtime if runtime_style else OptimizationStyle.Fixed
    target_platform = "arm" if platform in ("android", "ios") else None
    with _quiet_converter() as printed:
        try:
            convert_onnx_models_to_ort(source, output_dir=work / "out", optimization_styles=[style],
                                       target_platform=target_platform, enable_type_reduction=True)
        except Exception as exc:  # the table knows what onnxruntime.tools raises; a bug propagates
            tail = " ".join(printed.getvalue().split()[-30:])  # what the converter printed last
            raise translate(exc, "onnxruntime", "convert", name=model.name, tail=tail) from exc
    out = work / "out"
    orts = sorted(out.glob("*.ort"))
    configs = sorted(out.glob("*.config"))
    if len(orts) != 1 or len(configs) != 1:
        raise ExportError(f"onnxruntime's converter wrote {[p.name for p in out.iterdir()]}, expected one .ort "
                          "and one .config; is this onnxruntime version supported?")
    os.replace(orts[0], stage / ORT_MODEL)
    config = stage / OPS_CONFIG
    _write_config(configs[0], config)
    shutil.rmtree(work, ignore_errors=True)
    return OrtConversion(stage / ORT_MODEL, config, style.name, target_platform, read_operators(config))


def _write_config(produced: Path, dest: Path) -> None:
    """The converter's config, with its header naming the package's model instead of a staging path."""
    lines = []
    for line in produced.read_text().splitlines():
        if line.startswith("# - "):
            line = f"# - {ORT_MODEL}"
        lines.append(line)
    dest.write_text("\n".join(lines) + "\n")


def read_operators(config: Path) -> dict[str, dict[int, set[str]]]:
    """domain -> opset -> op types of a required-operators config, read by onnxruntime's own parser."""
    from onnxruntime.tools.reduced_build_config_parser import parse_config

    required, _filter = parse_config(str(config), enable_type_reduction=False)
    return {d: {int(v): set(ops) for v, ops in sets.items()} for d, sets in (required or {}).items()}


def build_flags(platform: str, conversion: OrtConversion, eps: list[str]) -> dict:
    """The ONNX Runtime build that runs this package and nothing more: flags for ``tools/ci_build/build.py``.

    ``--minimal_build`` loads only ORT-format models; ``extended`` adds what EPs that compile
    nodes at runtime (NNAPI, CoreML) and XNNPACK need. ``--disable_ml_ops`` only when the model
    has no ai.onnx.ml operators.
    """
    compiling = [ep for ep in eps if ep in ("NNAPI", "CoreML", "XNNPACK")]
    flags = ["--config", "MinSizeRel", "--build_shared_lib", "--parallel", "--skip_tests",
             "--minimal_build", *(["extended"] if compiling else []),
             "--include_ops_by_config", OPS_CONFIG, "--enable_reduced_operator_type_support",
             "--disable_exceptions"]
    if "ai.onnx.ml" not in conversion.operators:
        flags.append("--disable_ml_ops")
    if platform == "android":
        flags += ["--android", "--android_sdk_path", "$ANDROID_HOME", "--android_ndk_path", "$ANDROID_NDK_HOME",
                  "--android_abi", "arm64-v8a", "--android_api", "29", "--build_java"]
    elif platform == "ios":
        flags += ["--ios", "--use_xcode", "--apple_sysroot", "iphoneos", "--osx_arch", "arm64",
                  "--apple_deploy_target", "15.1", "--build_apple_framework"]
    for ep in compiling:
        flags.append({"NNAPI": "--use_nnapi", "CoreML": "--use_coreml", "XNNPACK": "--use_xnnpack"}[ep])
    return {
        "config": OPS_CONFIG,
        "flags": flags,
        "command": "python tools/ci_build/build.py --build_dir build/minimal " + " ".join(flags),
        "docs": "https://onnxruntime.ai/docs/build/custom.html",
        "note": "run in an onnxruntime checkout of the version the package was converted with (ORT format is not "
                "guaranteed across versions); the build edits kernel registrations, so use a clean checkout",
    }
