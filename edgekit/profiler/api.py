"""``predict``: what a model will do on a target, from an artifact or from its size and quantization.

The roofline needs a host calibration of the same runtime (roofline.py). In
order of preference: the one passed in (a :class:`Calibration` or a bench JSON
report); for an artifact, a short host run of that artifact itself (one
process, 64 prompt and 32 generated tokens); for a parameter count, the latest
calibration ``edgekit bench`` saved for that runtime, or else a short run of the
packaged SmolLM2 GGUF when the quantization is a GGUF type.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgekit.errors import ConfigError, SourceError
from edgekit.fileio import parse_json
from edgekit.profiler.roofline import Calibration, Prediction, load_calibration
from edgekit.profiler.roofline import predict as roofline_predict
from edgekit.profiler.shape import ModelShape, artifact_shape, check_count, parse_params, shape_from_params
from edgekit.progress import Progress, ensure
from edgekit.strict import load_versioned
from edgekit.targets.profile import TargetProfile
from edgekit.targets.resolve import resolve_target

QUICK = {"prompt_tokens": 64, "gen_tokens": 32, "runs": 1, "warmup": 0}


def calibration_from_report(path: str | os.PathLike, backend: str) -> Calibration:
    """The first calibration of ``backend`` in a bench JSON report."""
    p = Path(path).expanduser()
    try:
        data = parse_json(p.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"calibration={p} is not a readable bench JSON report ({exc})", param="calibration") from exc
    if not isinstance(data, dict) or data.get("schema") != "edgekit.bench":
        raise ConfigError(f"calibration={p} is not an edgekit bench report (no \"schema\": \"edgekit.bench\")",
                          param="calibration")
    results = data.get("results", [])
    for result in results if isinstance(results, list) else ():
        cal = result.get("calibration") if isinstance(result, dict) else None
        if isinstance(cal, dict) and cal.get("backend") == backend and cal.get("kind") == "decoder":
            try:
                return load_versioned(Calibration, cal, where=f"calibration={p}", error=ConfigError,
                                      hint="bench again with this edgekit")
            except ConfigError as exc:
                raise ConfigError(str(exc), param="calibration") from exc
    raise ConfigError(f"calibration={p} holds no {backend} decoder calibration: bench a {backend} artifact",
                      param="calibration")


def quick_calibration(artifact: str | os.PathLike, threads: int | None, progress: Progress | None) -> Calibration:
    """Calibrate on the host with one short run of ``artifact``.

    ``threads`` is the target's thread count; the host runs at most as many threads as it has CPUs (the
    roofline carries a calibration to other thread counts), so a 16-core target can be predicted from a
    2-core host.
    """
    from edgekit.errors import BenchRunError
    from edgekit.profiler.bench import bench
    from edgekit.runtimes.threads import available_cpus

    host_threads = min(threads, available_cpus()) if threads else None
    report = bench([artifact], threads=host_threads, progress=progress, **QUICK)
    result = report.results[0]
    if result.calibration is None:
        raise BenchRunError(f"calibration run of {artifact} failed: {result.error}")
    return result.calibration


def _calibration_for(shape: ModelShape, artifact, calibration, threads, progress) -> Calibration:
    if isinstance(calibration, Calibration):
        return calibration
    if calibration is not None:
        return calibration_from_report(calibration, shape.backend)
    if artifact is not None:
        return quick_calibration(artifact, threads, progress)
    cached = load_calibration(shape.backend)
    if cached is not None:
        return cached
    if shape.backend == "llama.cpp":
        try:
            from edgekit.packaged import smollm2_gguf_path

            return quick_calibration(smollm2_gguf_path(), threads, progress)
        except SourceError:
            pass
    raise ConfigError(
        f"no {shape.backend} calibration on this machine yet: run 'edgekit bench' on any "
        f"{'GGUF' if shape.backend == 'llama.cpp' else 'ONNX'} decoder artifact once, or pass calibration=REPORT.json",
        param="calibration",
    )


def predict(target: str | TargetProfile, artifact: str | os.PathLike | None = None, **options) -> Prediction:
    """Predict decode/prefill tokens/s and memory need of an artifact, or of ``params=`` at ``quant=``, on ``target``.

    Options: params, quant, layers, kv_heads, head_dim, context, threads, prompt_tokens, gen_tokens,
    calibration (a Calibration or a bench JSON report path), progress.
    """
    return predict_full(target, artifact, **options)[0]


def predict_full(
    target: str | TargetProfile, artifact: str | os.PathLike | None = None, *, params: str | int | float | None = None,
    quant: str | None = None, layers: int | None = None, kv_heads: int | None = None, head_dim: int | None = None,
    context: int | None = None, threads: int | None = None, prompt_tokens: int = 128, gen_tokens: int = 128,
    calibration: Calibration | str | os.PathLike | None = None, progress: Progress | None = None,
) -> tuple[Prediction, ModelShape, Calibration]:
    """:func:`predict`, also returning the model shape and the calibration it used."""
    profile = target if isinstance(target, TargetProfile) else resolve_target(target)
    if (artifact is None) == (params is None):
        raise ConfigError("pass either an artifact or params= with quant=", param=("params", "quant"))
    check_count("context", context, minimum=2)
    check_count("prompt_tokens", prompt_tokens, required=True)
    check_count("gen_tokens", gen_tokens, required=True)
    if artifact is not None:
        shape = artifact_shape(artifact)
    else:
        if not quant:
            raise ConfigError("params needs quant= (a GGUF type such as q4_k_m, or an ONNX precision such as int4)",
                              param=("params", "quant"))
        shape = shape_from_params(parse_params(params), quant, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                                  context=context)
    cal = _calibration_for(shape, artifact, calibration, threads, ensure(progress))
    pred = roofline_predict(shape, profile, cal, threads=threads, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                            context=context)
    return pred, shape, cal
