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

from edgekit.artifact import Artifact
from edgekit.errors import ExportError
from edgekit.exporters.onnx_fused.build import GRAPH_KIND, MODEL_FILE, DecoderBuilder, QuantPlan
from edgekit.exporters.onnx_fused.genai import genai_config, write_genai_config
from edgekit.fileio import staged_artifact
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
from edgekit.progress import Progress, ensure
from edgekit.quality import compute_reference, format_gate_line, gate, raise_if_failed, skipped_report
from edgekit.runtimes.tokenizer import HFTokenizer
from edgekit.sources import ResolvedSource, count_params
from edgekit.version import __version__

# Files copied from the source folder into the artifact, besides the model.
SIDE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json",
)
RUNTIMES = ["edgekit", "onnxruntime-genai"]


def default_plan(precision: str, n_layers: int) -> QuantPlan:
    """The quantization plan of each precision.

    int4 is the Pareto pick measured on SmolLM2-135M (KL against the transformers model, the gate's 20 prompts;
    size of model.onnx + data; ``benchmarks/onnx_peer.py``): 4-bit blocks of 32 with a float block minimum
    (``minmax``, llama.cpp's Q4_1 grid) everywhere, output layer at 8 bits: 111 MB, KL 0.024, top-1 0.91. The
    integer-zero-point forms it replaced: RTN 104 MB, 0.54 / 0.59; importance-weighted search 104 MB, 0.34 /
    0.72; search plus 8 bits for ffn_down and qkv on llama.cpp's ``use_more_bits`` layers 114 MB, 0.19 / 0.79
    (and slower: 8-bit MatMulNBits decodes slower than 4-bit here). ``n_layers`` is for plans that pick layers.
    """
    if precision == "fp32":
        return QuantPlan(default_bits=0)
    if precision == "int8":  # RTN: KL 0.007, top-1 0.96, 158 MB
        return QuantPlan(default_bits=8, head_bits=8, embed_bits=8)
    if precision == "int4":
        return QuantPlan(default_bits=4, head_bits=8, embed_bits=4, method="minmax")
    raise ExportError(f"the fused ONNX builder makes fp32, int8 and int4, not {precision}: use via='optimum'",
                      param="via")


def _copy_side_files(src: Path, stage: Path) -> None:
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, stage / name)
    if not (stage / "tokenizer.json").is_file():  # a sentencepiece-only folder: let transformers write tokenizer.json
        try:
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(str(src), local_files_only=True).save_pretrained(str(stage))
        except Exception as exc:  # transformers raises anything; translate at the boundary
            raise ExportError(f"{src.name} has no tokenizer.json and transformers could not make one: {exc}") from exc


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
) -> Artifact:
    """Build, gate and write the fused artifact at ``stage_parent_out`` (checked writable by the caller)."""
    progress = ensure(progress)
    plan = plan or default_plan(precision, int(src.config.get("num_hidden_layers") or 0))
    task = "text-generation"
    info = model_info_from_folder(src.path, task, n_params=count_params(src.weight_files))
    out = stage_parent_out
    with staged_artifact(out, force, progress) as stage:
        _copy_side_files(src.path, stage)
        info = info.model_copy(update={"tokenizer_size": HFTokenizer(stage).vocab_size})
        t0 = time.perf_counter()
        if plan.method == "search" and not plan.importance:
            from edgekit.exporters.onnx_fused.calib import activation_importance

            with progress.step("calibrate: input activation statistics of every matrix (fp32 graph)"):
                plan.importance = activation_importance(src.path, src.weight_files, HFTokenizer(stage), threads)
        with progress.step(f"export: building the fused {precision} decoder graph from {src.path.name}"):
            builder = DecoderBuilder(src.path, src.weight_files, plan)
            result = builder.build(stage)
        build_s = time.perf_counter() - t0
        gates: list[GateReport] = []
        if run_gate:
            from edgekit.runtimes.onnx import open_onnx

            reference = compute_reference("decoder", src.path, prompts, HFTokenizer(stage), progress=progress)
            with open_onnx(stage, MODEL_FILE, task, info, threads=threads) as model:
                gates.append(gate(model, reference, precision, thresholds, label=precision, progress=progress))
            progress.log(format_gate_line(precision, gates[-1]))
            raise_if_failed(gates[-1], precision)
        s = builder.shape
        write_genai_config(stage, genai_config(
            builder.spec.genai_type, s, int(builder.w.refs["token_embd.weight"].shape[0]), builder.context, MODEL_FILE,
            info.bos_token_id, list(info.eos_token_ids), builder.config.get("pad_token_id"), threads))
        manifest = Manifest(
            format="onnx",
            task=task,
            precision=precision,
            quantization=Quantization(method="none" if precision == "fp32" else "matmul_nbits",
                                      params={} if precision == "fp32" else {**plan.describe(), "tool": "edgekit"}),
            graph_rewrites=[GRAPH_KIND],
            runtimes=list(RUNTIMES),
            model_file=MODEL_FILE,
            model=info,
            source=src.info,
            files=list_files(stage),
            versions={"edgekit": __version__, **package_versions("onnx", "onnxruntime", "tokenizers", "gguf")},
            gate=gates[-1] if gates else skipped_report("decoder", prompts),
            created_at=now_iso(),
        )
        write_manifest(stage, manifest)
        progress.log(f"fused graph: {result.n_nodes} nodes, {result.weight_bytes / 1e6:.1f} MB of weights, "
                     f"built in {build_s:.1f} s")
    return Artifact(out, manifest)
