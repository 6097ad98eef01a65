"""Hugging Face -> ONNX with optimum-onnx, quantization with onnxruntime, then the quality gate.

``export_onnx`` checks every input first (source, task, output path, prompts),
then works in a staging folder beside the destination:

1. optimum-onnx traces the model (decoders: ``text-generation-with-past``, so the
   artifact carries a KV cache);
2. the fp32 graph is gated against the transformers model (catches a broken export);
3. the graph is quantized (int8 / int4 / fp16) and gated again with that precision's thresholds;
4. the manifest is written and the folder renamed into place.

A failed gate raises :class:`QualityGateError` and leaves nothing at the destination.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from pathlib import Path
from typing import Callable

from edgekit import quants
from edgekit.artifact import Artifact
from edgekit.errors import ConfigError, ExportError, MissingDependencyError, UnsupportedModelError
from edgekit.exporters.onnx_graph import optimize_decoder
from edgekit.exporters.onnx_quant import model_files, quantize
from edgekit.fileio import check_output_path, staged_artifact
from edgekit.manifest import (
    GateReport,
    Manifest,
    Quantization,
    list_files,
    model_info_from_folder,
    now_iso,
    package_versions,
    write_manifest,
)
from edgekit.names import KIND_OF_TASK
from edgekit.progress import Progress, ensure
from edgekit.quality import (
    check_recorded,
    check_source_matches,
    compute_reference,
    format_gate_line,
    gate,
    load_prompts,
    raise_if_failed,
    skipped_report,
    thresholds_for,
)
from edgekit.runtimes.tokenizer import HFTokenizer
from edgekit.sources import ResolvedSource, check_task, count_params, infer_task, resolve_source
from edgekit.version import __version__

MODEL_FILE = "model.onnx"
OPTIMUM_TASK = {
    "text-generation": "text-generation-with-past",
    "feature-extraction": "feature-extraction",
    "text-classification": "text-classification",
}
# Decoders whose optimum export has the standard past_key_values.N.key/value layout the runtime drives.
DECODER_TYPES = (
    "arcee", "cohere", "gemma", "gemma2", "gemma3_text", "glm", "gpt2", "gpt_neox", "gptj", "granite", "helium",
    "llama", "mistral", "nemotron", "olmo", "olmo2", "opt", "phi", "phi3", "qwen2", "qwen3", "smollm3", "stablelm",
)
# Files copied from the export folder into the artifact, besides the model.
SIDE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json",
)


def supported_tasks(model_type: str) -> list[str]:
    """The edgekit tasks optimum-onnx can export for ``model_type`` (and the runtime can drive)."""
    try:
        import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
        from optimum.exporters.tasks import TasksManager
    except ImportError as exc:
        raise MissingDependencyError("optimum-onnx (for ONNX export)", "export") from exc
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except KeyError:
        return []
    out = [t for t, opt in OPTIMUM_TASK.items() if opt in tasks]
    if "text-generation" in out and model_type not in DECODER_TYPES:
        out.remove("text-generation")
    return out


def supported_model_types(task: str) -> list[str]:
    import optimum.exporters.onnx.model_configs  # noqa: F401
    from optimum.exporters.tasks import TasksManager

    if task == "text-generation":
        return sorted(DECODER_TYPES)
    return sorted(k for k, v in TasksManager._SUPPORTED_MODEL_TYPE.items() if OPTIMUM_TASK[task] in v.get("onnx", {}))


def resolve_task(src: ResolvedSource, task: str, via: str = "optimum") -> str:
    """The task to export: ``task``, or the one the config implies; refused when no path can export it.

    A decoder the fused builder covers needs no question to optimum (whose import alone takes seconds),
    unless ``via="optimum"`` insists on the traced path.
    """
    check_task(task)
    wanted = infer_task(src.config) if task == "auto" else task
    if wanted == "text-generation" and via != "optimum":
        from edgekit.exporters.onnx_fused import covers

        if covers(src.config):
            return wanted
    can = supported_tasks(src.model_type)
    if wanted not in can:
        if not can:
            raise UnsupportedModelError(
                f"model type {src.model_type!r} cannot be exported to ONNX by edgekit; supported for {wanted}: "
                f"{', '.join(supported_model_types(wanted))}"
            )
        raise UnsupportedModelError(
            f"a {src.model_type} model cannot do {wanted}; this model supports: {', '.join(can)}"
        )
    return wanted


@contextlib.contextmanager
def _quiet():
    """Silence the tracer's warnings and library info logs; real errors still raise."""
    names = ("transformers", "optimum", "onnxruntime", "torch.onnx", "root")
    levels = {n: logging.getLogger(n if n != "root" else None).level for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            logging.getLogger(n if n != "root" else None).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for n, lvl in levels.items():
                logging.getLogger(n if n != "root" else None).setLevel(lvl)


def _trace(src: ResolvedSource, task: str, work: Path) -> None:
    try:
        from optimum.exporters.onnx import main_export
    except ImportError as exc:
        raise MissingDependencyError("optimum-onnx (for ONNX export)", "export") from exc
    try:
        with _quiet():
            main_export(
                str(src.path), work, task=OPTIMUM_TASK[task], library_name="transformers", do_validation=False,
                local_files_only=True,
            )
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # torch/optimum raise anything; translate at the boundary
        raise ExportError(f"optimum-onnx could not trace {src.path.name}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    if not (work / MODEL_FILE).is_file():
        raise ExportError(f"optimum-onnx produced no {MODEL_FILE} (files: {sorted(p.name for p in work.iterdir())})")


def _open_runtime(folder: Path, model_file: str, task: str, info, threads):
    from edgekit.runtimes.onnx import open_onnx

    return open_onnx(folder, model_file, task, info, threads=threads)


def export_onnx(
    source: str | Path,
    out: str | Path,
    *,
    task: str = "auto",
    quant: str = "none",
    prompts: str | Path | None = None,
    force: bool = False,
    thresholds: dict[str, float] | None = None,
    run_gate: bool = True,
    allow_pickle: bool = False,
    revision: str | None = None,
    threads: int | None = None,
    postprocess: Callable | None = None,
    int8_mode: str = "auto",
    optimize: bool = True,
    via: str = "auto",
    progress: Progress | None = None,
) -> Artifact:
    """Export ``source`` to an ONNX artifact folder ``out`` and gate it; return the :class:`Artifact`.

    ``quant``: none | int8 | int4 | fp16 (see :mod:`edgekit.exporters.onnx_quant`;
    ``int8_mode``: auto | dynamic | blockwise picks the int8 form). ``thresholds``: overrides of the gate's
    default bounds (``{"kl_mean": 0.05}``). ``postprocess``: a function applied to the
    traced ``onnx.ModelProto`` (for custom graph edits) before quantization; the gate
    checks its result like everything else. ``optimize``: apply edgekit's decoder graph
    rewrites (:mod:`edgekit.exporters.onnx_graph`: grouped-query attention without
    repeat_kv copies); False keeps optimum's graph as traced. ``via``: auto | fused | optimum. Decoders of
    the families :mod:`edgekit.exporters.onnx_fused` covers are built as one fused graph straight from the
    safetensors (auto and fused; fp32/int8/int4); everything else, and ``via="optimum"``, is traced by optimum.
    """
    progress = ensure(progress)
    q = quants.export_quant("onnx", quant)
    precision = q.name
    if int8_mode not in ("auto", "dynamic", "blockwise"):
        raise ConfigError(f"unknown int8 mode {int8_mode!r}: use auto, dynamic or blockwise")
    check_task(task)
    out = check_output_path(out, force)
    prompt_list = load_prompts(prompts)
    src = resolve_source(source, allow_pickle=allow_pickle, revision=revision)
    task = resolve_task(src, task, via)
    kind = KIND_OF_TASK[task]
    if _use_fused(src, task, via, precision, postprocess, optimize, int8_mode):
        from edgekit.exporters.onnx_fused.export import export_fused

        return export_fused(src, out, precision=precision, prompts=prompt_list, force=force,
                            thresholds=thresholds_for(kind, precision, thresholds), run_gate=run_gate,
                            threads=threads, progress=progress)
    gate_thresholds = {
        "fp32": thresholds_for(kind, "fp32", thresholds if precision == "fp32" else None),
        precision: thresholds_for(kind, precision, _traced_bounds(kind, precision, thresholds)),
    }
    info = model_info_from_folder(src.path, task, n_params=count_params(src.weight_files) if not src.pickle_weights else None)

    with staged_artifact(out, force, progress) as stage:
        work = stage / ".export"
        with progress.step(f"export: tracing {src.path.name} ({task}) with optimum-onnx"):
            _trace(src, task, work)
        if (work / "tokenizer.json").is_file():  # recorded: the gate cannot see a tokenizer cut short later
            info = info.model_copy(update={"tokenizer_size": HFTokenizer(work).vocab_size})
        rewrites: list[str] = []
        if optimize and kind == "decoder":
            with progress.step("optimize: attention reads the KV cache without repeat_kv copies"):
                rewrites = optimize_decoder(work / MODEL_FILE, info.n_heads, info.n_kv_heads, info.head_dim)
        if postprocess is not None:
            _apply_postprocess(work / MODEL_FILE, postprocess)

        gates: list[GateReport] = []
        if run_gate:
            # the reference first, with the artifact's tokenizer alone: the transformers model is
            # freed before onnxruntime loads the artifact, so both never sit in memory together
            reference = compute_reference(
                kind, src.path, prompt_list, HFTokenizer(work, max_length=info.context_length if kind != "decoder" else None),
                encoder_settings=(info.pooling or "mean", bool(info.normalize)),
                allow_pickle=allow_pickle, progress=progress,
            )
            fp32_model = _open_runtime(work, MODEL_FILE, task, info, threads)
            with fp32_model:
                gates.append(gate(fp32_model, reference, "fp32", gate_thresholds["fp32"], label="fp32", progress=progress))
            progress.log(format_gate_line("fp32", gates[-1]))
            raise_if_failed(gates[-1], "fp32")

        qmethod, qparams = "none", {}
        final_dir, final_file = work, MODEL_FILE
        if not q.direct:
            qdir = stage / ".quant"
            qdir.mkdir()
            with progress.step(f"quantize: {precision} with onnxruntime"):
                qmethod, qparams = quantize_model(work / MODEL_FILE, qdir / MODEL_FILE, precision, kind == "decoder", int8_mode)
            final_dir = qdir
            if run_gate:
                qmodel = _open_runtime_mixed(work, qdir, task, info, threads)
                with qmodel:
                    gates.append(gate(qmodel, reference, precision, gate_thresholds[precision], label=precision, progress=progress))
                progress.log(format_gate_line(precision, gates[-1]))
                raise_if_failed(gates[-1], precision)

        for f in model_files(final_dir / final_file):
            shutil.move(str(f), stage / f.name)
        for name in SIDE_FILES:
            if (work / name).is_file():
                shutil.copy2(work / name, stage / name)
        shutil.rmtree(work, ignore_errors=True)
        if final_dir != work:
            shutil.rmtree(final_dir, ignore_errors=True)

        manifest = Manifest(
            format="onnx",
            task=task,
            precision=precision,
            quantization=Quantization(method=qmethod, params=qparams),
            graph_rewrites=rewrites,
            model_file=MODEL_FILE,
            model=info,
            source=src.info,
            files=list_files(stage),
            versions={"edgekit": __version__, **package_versions(
                "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers")},
            gate=gates[-1] if gates else skipped_report(kind, prompt_list),
            stage_gates=gates[:-1],
            created_at=now_iso(),
        )
        write_manifest(stage, manifest)
    return Artifact(out, manifest)




# The int4 gate bounds of quality.py are the fused builder's; optimum-traced int4 decoders (onnxruntime's
# RTN quantizer, SmolLM2-135M KL 0.50, top-1 0.63) keep the bounds they had.
LEGACY_INT4 = {"kl_mean": 0.8, "kl_max": 6.0, "top1": 0.55}


def _traced_bounds(kind: str, precision: str, thresholds: dict[str, float] | None) -> dict[str, float] | None:
    if kind == "decoder" and precision == "int4":
        return {**LEGACY_INT4, **(thresholds or {})}
    return thresholds


def _use_fused(src: ResolvedSource, task: str, via: str, precision: str, postprocess, optimize: bool,
               int8_mode: str) -> bool:
    """Whether the fused builder makes this export: auto takes it where it covers the model, fused insists."""
    if via not in ("auto", "fused", "optimum"):
        raise ConfigError(f"unknown export path via={via!r}: use auto, fused or optimum", param="via")
    if via == "optimum":
        return False
    from edgekit.exporters.onnx_fused import covers

    why = None
    if task != "text-generation":
        why = f"it builds decoders only, not {task}"
    elif not covers(src.config):
        if via == "fused":  # say what the builder lacks (a rope scaling, an activation...), not just the type
            from edgekit.exporters.onnx_fused.specs import fused_spec_for

            fused_spec_for(src.config)
        why = f"it does not cover model type {src.model_type!r}"
    elif src.pickle_weights:
        why = "it reads safetensors weights only"
    elif precision not in ("fp32", "int8", "int4"):
        why = f"it makes fp32, int8 and int4, not {precision}"
    elif postprocess is not None or not optimize or int8_mode != "auto":
        why = "postprocess, optimize=False and int8_mode apply to the traced graph"
    if why is None:
        return True
    if via == "fused":
        raise UnsupportedModelError(f"the fused ONNX builder cannot make this export: {why}; use via='optimum'",
                                    param="via")
    return False


def quantize_model(src: Path, dst: Path, method: str, decoder: bool, int8_mode: str = "auto") -> tuple[str, dict]:
    with _quiet():
        return quantize(src, dst, method, decoder=decoder, int8_mode=int8_mode)


def _open_runtime_mixed(work: Path, qdir: Path, task: str, info, threads):
    """Open the quantized model with the export folder's tokenizer files (copied beside it)."""
    for name in SIDE_FILES:
        if (work / name).is_file():
            shutil.copy2(work / name, qdir / name)
    return _open_runtime(qdir, MODEL_FILE, task, info, threads)


def _apply_postprocess(path: Path, fn: Callable) -> None:
    import onnx

    model = onnx.load(str(path))
    name = getattr(fn, "__name__", "postprocess")
    try:
        result = fn(model)
        if result is not None and not isinstance(result, onnx.ModelProto):
            raise TypeError(f"it returned {type(result).__name__}, not an onnx.ModelProto or None")
        onnx.save_model(result if result is not None else model, str(path))
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the user's code: report it in one line
        raise ConfigError(f"the postprocess function {name} failed: {type(exc).__name__}: {exc}") from exc


def gate_onnx(
    artifact: str | Path,
    source: str | Path,
    *,
    prompts: str | Path | None = None,
    thresholds: dict[str, float] | None = None,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> GateReport:
    """Re-run the quality gate of an existing ONNX artifact against its original model."""
    from edgekit.runtimes import load

    art = Artifact.open(artifact)
    if art.manifest.format != "onnx":
        raise ConfigError(f"{artifact} is a {art.manifest.format} artifact, not ONNX: use edgekit.gate_artifact")
    prompt_list = load_prompts(prompts)
    src = resolve_source(source, allow_pickle=allow_pickle, hash_weights=False)
    check_source_matches(art.manifest, src, artifact)  # before the reference model runs
    kind = KIND_OF_TASK[art.manifest.task]
    info = art.manifest.model
    tokenizer = HFTokenizer(art.path, max_length=info.context_length if kind != "decoder" else None)
    reference = compute_reference(
        kind, src.path, prompt_list, tokenizer, encoder_settings=(info.pooling or "mean", bool(info.normalize)),
        allow_pickle=allow_pickle, progress=progress,
    )
    traced = not any(r.startswith("fused-decoder/") for r in art.manifest.graph_rewrites)
    limits = thresholds_for(kind, art.manifest.precision,
                            _traced_bounds(kind, art.manifest.precision, thresholds) if traced else thresholds)
    with load(art.path, threads=threads) as model:
        report = gate(model, reference, art.manifest.precision, limits, progress=progress)
    return check_recorded(report, art.manifest.gate)
