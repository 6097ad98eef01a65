"""Export a decoder as a fused ONNX artifact: build the graph from the safetensors, gate it, write the manifest.

Called by :func:`edgekit.exporters.onnx.export_onnx` for the decoder families the
fused builder covers (``via="auto"`` or ``"fused"``). Steps, in a staging folder
beside the destination:

1. the tokenizer and config files are copied from the source folder;
2. the graph is built straight from the safetensors at the asked precision
   (:mod:`build`; int4/int8 matrices quantized in numpy, :mod:`nbits`);
3. the artifact is gated against the transformers model with that precision's bounds;
4. ``genai_config.json`` and the manifest are written and the folder renamed into place.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from edgekit.artifact import Artifact
from edgekit import quants
from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.exporters.context import ExportContext
from edgekit.exporters.onnx_fused.build import GRAPH_KIND, MODEL_FILE, DecoderBuilder, QuantPlan
from edgekit.exporters.onnx_fused.genai import genai_config, write_genai_config
from edgekit.fileio import staged_artifact
from edgekit.manifest import (
    GateReport,
    Manifest,
    Quantization,
    list_files,
    now_iso,
    package_versions,
    write_manifest,
)
from edgekit.progress import Progress, ensure
from edgekit.quality import compute_reference, format_gate_line, gate, raise_if_failed, skipped_report
from edgekit.sources import ResolvedSource
from edgekit.translate import translated
from edgekit.version import __version__

# Files copied from the source folder into the artifact, besides the model.
SIDE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json",
)
RUNTIMES = ["edgekit", "onnxruntime-genai"]


def default_plan(precision: str) -> QuantPlan:
    """The quantization plan of ``precision``: its :mod:`edgekit.quants` row's ``fused_plan`` (the
    measurements behind each plan sit beside the rows)."""
    row = quants.get(precision)
    if row is None or row.format != "onnx" or row.fused_plan is None:
        made = ", ".join(q.name for q in quants.fused_rows())
        raise ConfigError(f"the fused ONNX builder makes {made}, not {precision}: use via='optimum'", param="via")
    return QuantPlan(**row.fused_plan)


def _copy_side_files(src: Path, stage: Path) -> None:
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, stage / name)
    if not (stage / "tokenizer.json").is_file():  # a sentencepiece-only folder: let transformers write tokenizer.json
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError("transformers (to write tokenizer.json for a sentencepiece-only folder)",
                                         "export") from exc
        with translated("transformers", "tokenizer", folder=src, need="the fused ONNX export needs tokenizer.json"):
            AutoTokenizer.from_pretrained(str(src), local_files_only=True).save_pretrained(str(stage))


def export_fused(
    src: ResolvedSource,
    stage_parent_out: Path,
    *,
    precision: str,
    prompts: list[str],
    thresholds: dict[str, float],
    force: bool,
    run_gate: bool = True,
    threads: int | None = None,
    plan: QuantPlan | None = None,
    progress: Progress | None = None,
    ctx: ExportContext | None = None,
) -> Artifact:
    """Build, gate and write the fused artifact at ``stage_parent_out`` (checked writable by the caller).

    ``ctx``: the export's context (:func:`edgekit.exporters.onnx.export_onnx` builds it); made here when absent.
    """
    progress = ensure(progress)
    plan = plan or default_plan(precision)
    if ctx is None:
        ctx = ExportContext(src, quants.get(precision), prompts)
    out = stage_parent_out
    with staged_artifact(out, force, progress) as stage:
        _copy_side_files(src.path, stage)
        info = ctx.with_tokenizer_size(stage)
        t0 = time.perf_counter()
        builder, result = _build_step(ctx, stage, plan, precision, threads, progress)
        build_s = time.perf_counter() - t0
        gates: list[GateReport] = []
        if run_gate:
            gates.append(_gate_step(ctx, stage, precision, thresholds, threads, progress))
        write_genai_config(stage, genai_config(
            builder.spec.genai, builder.shape, int(builder.w.refs["token_embd.weight"].shape[0]), builder.context,
            MODEL_FILE, info.bos_token_id, list(info.eos_token_ids), builder.config.get("pad_token_id"), threads))
        manifest = _manifest(ctx, stage, precision, plan, gates)
        write_manifest(stage, manifest)
        progress.log(f"fused graph: {result.n_nodes} nodes, {result.weight_bytes / 1e6:.1f} MB of weights, "
                     f"built in {build_s:.1f} s")
    return Artifact(out, manifest)


def _on_4bit_grid(ctx: ExportContext) -> bool:
    """Whether the source's first layer matrices sit on a 4-bit grid in blocks of 32 (see nbits.grid_fraction)."""
    from edgekit.exporters.onnx_fused import nbits

    probe = DecoderBuilder(ctx.source.path, ctx.source.weight_files, QuantPlan(), ctx=ctx)
    names = [n for n in ("blk.0.attn_q.weight", "blk.0.ffn_down.weight") if probe.w.has(n)]
    return bool(names) and min(nbits.grid_fraction(probe.w.get(n)) for n in names) > 0.9


def _build_step(ctx: ExportContext, stage: Path, plan: QuantPlan, precision: str, threads: int | None,
                progress: Progress):
    """Calibrate where the plan asks for it, then build the graph into ``stage``: (builder, result)."""
    src = ctx.source
    if plan.on_grid and not plan.source_on_grid and _on_4bit_grid(ctx):
        for key, value in plan.on_grid.items():  # in place: the manifest describes the plan that was built
            setattr(plan, key, value)
        plan.on_grid, plan.source_on_grid = {}, True
        progress.log("the source's weights sit on a 4-bit grid (dequantized from a 4-bit GGUF?): "
                     f"int4 blocks with a float minimum reproduce it ({plan.method})")
    if (plan.method in ("search", "gptq") or plan.sensitive) and not plan.importance:
        from edgekit.exporters.onnx_fused.calib import activation_importance

        full = plan.method == "gptq"
        with progress.step("calibrate: input activation statistics of every matrix (fp32 graph)"):
            stats = activation_importance(src.path, src.weight_files, ctx.tokenizer(stage), threads, ctx=ctx, full=full)
        plan.importance = {k: np.diag(v).copy() for k, v in stats.items()} if full else stats
        plan.hessian = stats if full else {}
    if plan.sensitive and not plan.bits:
        from edgekit.exporters.onnx_fused.calib import sensitive_matrices

        with progress.step(f"calibrate: the {plan.sensitive:.0%} of matrix weights 4 bits would cost most"):
            plan.bits = sensitive_matrices(src.path, src.weight_files, plan, plan.sensitive, ctx=ctx)
    with progress.step(f"export: building the fused {precision} decoder graph from {src.path.name}"):
        builder = DecoderBuilder(src.path, src.weight_files, plan, ctx=ctx)
        return builder, builder.build(stage)


def _gate_step(ctx: ExportContext, stage: Path, precision: str, thresholds: dict[str, float], threads: int | None,
               progress: Progress) -> GateReport:
    from edgekit.runtimes.onnx import open_onnx

    tokenizer = ctx.tokenizer(stage)
    reference = compute_reference("decoder", ctx.path, ctx.prompts, tokenizer, progress=progress)
    with open_onnx(stage, MODEL_FILE, "text-generation", ctx.info, threads=threads, tokenizer=tokenizer) as model:
        report = gate(model, reference, precision, thresholds, label=precision, progress=progress)
    progress.log(format_gate_line(precision, report))
    raise_if_failed(report, precision)
    return report


def _manifest(ctx: ExportContext, stage: Path, precision: str, plan: QuantPlan, gates: list[GateReport]) -> Manifest:
    return Manifest(
        format="onnx",
        task="text-generation",
        precision=precision,
        quantization=Quantization(method="none" if plan.default_bits == 0 else "matmul_nbits",
                                  params={} if plan.default_bits == 0 else {**plan.describe(), "tool": "edgekit"}),
        graph_rewrites=[GRAPH_KIND],
        runtimes=list(RUNTIMES),
        model_file=MODEL_FILE,
        model=ctx.info,
        source=ctx.source.info,
        files=list_files(stage),
        versions={"edgekit": __version__, **package_versions("onnx", "onnxruntime", "tokenizers", "gguf")},
        gate=gates[-1] if gates else skipped_report("decoder", ctx.prompts),
        created_at=now_iso(),
    )
