"""Hugging Face -> ONNX, then the quality gate, by one of two paths.

``export_onnx`` checks every input first (source, task, output path, prompts),
then picks the path (``via``: auto | fused | optimum; :func:`_use_fused`):

* **fused** (:mod:`edgekit.exporters.onnx_fused`): decoders of the families it
  covers, from safetensors, at fp32/int8/int4 (``auto`` takes it wherever it
  covers the model): the graph is written op by op from the weights, no torch
  tracing; see :mod:`edgekit.exporters.onnx_fused.export` for its steps.
* **optimum** (this module; everything else, and ``via="optimum"``), in a
  staging folder beside the destination:

  1. optimum-onnx traces the model (decoders: ``text-generation-with-past``, so
     the artifact carries a KV cache), and :mod:`onnx_graph` rewrites a
     grouped-query decoder's attention to read the cache without ``repeat_kv`` copies;
  2. the fp32 graph is gated against the transformers model (catches a broken export);
  3. the graph is quantized with onnxruntime (:mod:`onnx_quant`: int8 / int4 /
     fp16) and gated again with that precision's thresholds;
  4. the manifest is written and the folder renamed into place.

Either way a failed gate raises :class:`QualityGateError` and leaves nothing at
the destination.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit import quants
from edgekit.artifact import Artifact
from edgekit.errors import ConfigError, ExportError, MissingDependencyError, UnsupportedModelError
from edgekit.exporters.context import ExportContext
from edgekit.exporters.onnx_graph import optimize_decoder
from edgekit.exporters.onnx_quant import model_files, quantize
from edgekit.fileio import check_output_path, staged_artifact
from edgekit.manifest import (
    GateReport,
    Manifest,
    Quantization,
    list_files,
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
from edgekit.sources import ResolvedSource, check_task, infer_task, resolve_source
from edgekit.translate import translated
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


def resolve_task(src: ResolvedSource, task: str, via: str = "optimum", *, ctx: ExportContext | None = None) -> str:
    """The task to export: ``task``, or the one the config implies; refused when no path can export it.

    A decoder the fused builder covers needs no question to optimum (whose import alone takes seconds),
    unless ``via="optimum"`` insists on the traced path.
    """
    check_task(task)
    wanted = infer_task(src.config) if task == "auto" else task
    if wanted == "text-generation" and via != "optimum":
        from edgekit.exporters.onnx_fused import covers

        if ctx.covers("onnx") if ctx is not None else covers(src.config):
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
    with translated("optimum", "trace", name=src.path.name), _quiet():
        main_export(
            str(src.path), work, task=OPTIMUM_TASK[task], library_name="transformers", do_validation=False,
            local_files_only=True,
        )
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
    if int8_mode not in ("auto", "dynamic", "blockwise"):
        raise ConfigError(f"unknown int8 mode {int8_mode!r}: use auto, dynamic or blockwise", param="int8_mode")
    check_task(task)
    out = check_output_path(out, force)
    prompt_list = load_prompts(prompts)
    ctx = ExportContext(resolve_source(source, allow_pickle=allow_pickle, revision=revision), q, prompt_list,
                        thresholds)
    ctx.task = resolve_task(ctx.source, task, via, ctx=ctx)
    if _use_fused(ctx.source, ctx.task, via, q.name, postprocess, optimize, int8_mode, ctx=ctx):
        from edgekit.exporters.onnx_fused.export import export_fused

        return export_fused(ctx.source, out, precision=q.name, prompts=prompt_list, force=force,
                            thresholds=thresholds_for(KIND_OF_TASK[ctx.task], q.name, thresholds),
                            run_gate=run_gate, threads=threads, progress=progress, ctx=ctx)
    opts = _TracedOptions(run_gate, allow_pickle, threads, postprocess, int8_mode, optimize)
    return _export_traced(ctx, out, force, opts, progress)


@dataclass
class _TracedOptions:
    run_gate: bool
    allow_pickle: bool
    threads: int | None
    postprocess: Callable | None
    int8_mode: str
    optimize: bool


def _export_traced(ctx: ExportContext, out: Path, force: bool, opts: _TracedOptions, progress: Progress) -> Artifact:
    """The optimum path, in a staging folder: trace (and rewrite), gate fp32, quantize and gate, assemble."""
    kind, precision = KIND_OF_TASK[ctx.task], ctx.quant.name
    bounds = {
        "fp32": thresholds_for(kind, "fp32", ctx.thresholds if precision == "fp32" else None),
        precision: thresholds_for(kind, precision, _traced_bounds(kind, precision, ctx.thresholds)),
    }
    with staged_artifact(out, force, progress) as stage:
        work = stage / ".export"
        rewrites = _trace_step(ctx, work, opts, progress)
        gates: list[GateReport] = []
        reference = _gate_step(ctx, work, "fp32", bounds["fp32"], None, gates, opts, progress)
        qmethod, qparams, final_dir = "none", {}, work
        if not ctx.quant.direct:
            final_dir = stage / ".quant"
            qmethod, qparams = _quantize_step(ctx, work, final_dir, opts, progress)
            _gate_step(ctx, final_dir, precision, bounds[precision], reference, gates, opts, progress, work=work)
        _assemble(stage, work, final_dir)
        manifest = _traced_manifest(ctx, stage, Quantization(method=qmethod, params=qparams), rewrites, gates)
        write_manifest(stage, manifest)
    return Artifact(out, manifest)


def _trace_step(ctx: ExportContext, work: Path, opts: _TracedOptions, progress: Progress) -> list[str]:
    """Trace with optimum-onnx, record the tokenizer size, apply edgekit's rewrites and the user's postprocess."""
    with progress.step(f"export: tracing {ctx.path.name} ({ctx.task}) with optimum-onnx"):
        _trace(ctx.source, ctx.task, work)
    if (work / "tokenizer.json").is_file():  # recorded: the gate cannot see a tokenizer cut short later
        ctx.with_tokenizer_size(work)
    info, rewrites = ctx.info, []
    if opts.optimize and KIND_OF_TASK[ctx.task] == "decoder":
        with progress.step("optimize: attention reads the KV cache without repeat_kv copies"):
            rewrites = optimize_decoder(work / MODEL_FILE, info.n_heads, info.n_kv_heads, info.head_dim)
    if opts.postprocess is not None:
        _apply_postprocess(work / MODEL_FILE, opts.postprocess)
    return rewrites


def _gate_step(ctx: ExportContext, folder: Path, precision: str, limits: dict, reference, gates: list,
               opts: _TracedOptions, progress: Progress, work: Path | None = None):
    """Gate the model in ``folder`` (``work``: the export folder whose tokenizer files it borrows); return the
    reference (computed on the first call: the transformers model is freed before onnxruntime loads the
    artifact, so both never sit in memory together)."""
    if not opts.run_gate:
        return None
    kind, info = KIND_OF_TASK[ctx.task], ctx.info
    if reference is None:
        tokenizer = ctx.tokenizer(folder, max_length=info.context_length if kind != "decoder" else None)
        reference = compute_reference(kind, ctx.path, ctx.prompts, tokenizer,
                                      encoder_settings=(info.pooling or "mean", bool(info.normalize)),
                                      allow_pickle=opts.allow_pickle, progress=progress)
    opened = (_open_runtime(folder, MODEL_FILE, ctx.task, info, opts.threads) if work is None
              else _open_runtime_mixed(work, folder, ctx.task, info, opts.threads))
    with opened as model:
        gates.append(gate(model, reference, precision, limits, label=precision, progress=progress))
    progress.log(format_gate_line(precision, gates[-1]))
    raise_if_failed(gates[-1], precision)
    return reference


def _quantize_step(ctx: ExportContext, work: Path, qdir: Path, opts: _TracedOptions,
                   progress: Progress) -> tuple[str, dict]:
    qdir.mkdir()
    with progress.step(f"quantize: {ctx.quant.name} with onnxruntime"):
        return quantize_model(work / MODEL_FILE, qdir / MODEL_FILE, ctx.quant, KIND_OF_TASK[ctx.task] == "decoder",
                              opts.int8_mode)


def _assemble(stage: Path, work: Path, final_dir: Path) -> None:
    """The final model files and the side files into the staging folder; the work folders removed."""
    for f in model_files(final_dir / MODEL_FILE):
        shutil.move(str(f), stage / f.name)
    for name in SIDE_FILES:
        if (work / name).is_file():
            shutil.copy2(work / name, stage / name)
    shutil.rmtree(work, ignore_errors=True)
    if final_dir != work:
        shutil.rmtree(final_dir, ignore_errors=True)


def _traced_manifest(ctx: ExportContext, stage: Path, quantization: Quantization, rewrites: list[str],
                     gates: list[GateReport]) -> Manifest:
    return Manifest(
        format="onnx",
        task=ctx.task,
        precision=ctx.quant.name,
        quantization=quantization,
        graph_rewrites=rewrites,
        model_file=MODEL_FILE,
        model=ctx.info,
        source=ctx.source.info,
        files=list_files(stage),
        versions={"edgekit": __version__, **package_versions(
            "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "tokenizers")},
        gate=gates[-1] if gates else skipped_report(KIND_OF_TASK[ctx.task], ctx.prompts),
        stage_gates=gates[:-1],
        created_at=now_iso(),
    )




def _traced_bounds(kind: str, precision: str, thresholds: dict[str, float] | None) -> dict[str, float] | None:
    """The traced path's bounds: a row's ``traced_bounds`` for decoders (the int4 of onnxruntime's RTN
    quantizer), under the caller's overrides; quality.py's otherwise."""
    row = quants.get(precision)
    if kind == "decoder" and row is not None and row.traced_bounds:
        return {**row.traced_bounds, **(thresholds or {})}
    return thresholds


def _use_fused(src: ResolvedSource, task: str, via: str, precision: str, postprocess, optimize: bool,
               int8_mode: str, *, ctx: ExportContext | None = None) -> bool:
    """Whether the fused builder makes this export: auto takes it where it covers the model, fused insists."""
    if via not in ("auto", "fused", "optimum"):
        raise ConfigError(f"unknown export path via={via!r}: use auto, fused or optimum", param="via")
    if via == "optimum":
        return False
    from edgekit.exporters.onnx_fused import covers

    why = None
    if task != "text-generation":
        why = f"it builds decoders only, not {task}"
    elif not (ctx.covers("onnx") if ctx is not None else covers(src.config)):
        if via == "fused":  # say what the builder lacks (a rope scaling, an activation...), not just the type
            from edgekit.exporters.onnx_fused.specs import fused_spec_for

            ctx.family("onnx") if ctx is not None else fused_spec_for(src.config)
        why = f"it does not cover model type {src.model_type!r}"
    elif src.pickle_weights:
        why = "it reads safetensors weights only"
    elif quants.get(precision) not in quants.fused_rows():
        why = f"it makes {', '.join(q.name for q in quants.fused_rows())}, not {precision}"
    elif postprocess is not None or not optimize or int8_mode != "auto":
        why = "postprocess, optimize=False and int8_mode apply to the traced graph"
    if why is None:
        return True
    if via == "fused":
        raise UnsupportedModelError(f"the fused ONNX builder cannot make this export: {why}; use via='optimum'",
                                    param="via")
    return False


def quantize_model(src: Path, dst: Path, method: str | quants.Quant, decoder: bool,
                   int8_mode: str = "auto") -> tuple[str, dict]:
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
        raise ConfigError(f"the postprocess function {name} failed: {type(exc).__name__}: {exc}",
                          param="postprocess") from exc


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
        raise ConfigError(f"{artifact} is a {art.manifest.format} artifact, not ONNX: use edgekit.gate_artifact",
                          param="artifact")
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
