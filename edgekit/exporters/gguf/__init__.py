"""Hugging Face -> GGUF with edgekit's own converter, llama.cpp's quantizer, and the quality gate.

``export_gguf`` checks every input first (quantization name, output path,
prompts, source, architecture), then works in a staging folder beside the
destination:

1. :mod:`convert` streams the safetensors weights into a GGUF (f32/f16/bf16 as
   asked, f16 as the intermediate for every quantized type); the tokenizer is
   proven against llama.cpp's own before anything is written;
2. :mod:`quant` quantizes the intermediate with ``llama_model_quantize``;
3. the gate feeds llama.cpp's token ids to the transformers model (fp32) and to
   llama.cpp (llama-cpp-python, every position's logits) and compares next-token
   distributions; the f16 intermediate is gated too, so a failure says whether
   conversion or quantization lost the quality;
4. the manifest (format ``gguf``) is written and the folder renamed into place.

A failed gate raises :class:`QualityGateError` and leaves nothing at ``out``.
Families without a row in :mod:`edgekit.families` can be converted by llama.cpp's own
``convert_hf_to_gguf.py`` (``llama_cpp_converter=`` or ``$EDGEKIT_LLAMA_CPP_CONVERTER``);
quantization and the gate stay the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit import quants
from edgekit.artifact import Artifact
from edgekit.errors import ConfigError, UnsupportedModelError
from edgekit.exporters.context import ExportContext
from edgekit.exporters.gguf.quant import quantize
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
from edgekit.progress import Progress, ensure
from edgekit.quality import (
    check_recorded,
    check_source_matches,
    compute_reference,
    format_gate_line,
    gate,
    load_prompts,
    prompts_digest,
    raise_if_failed,
    skipped_report,
    thresholds_for,
)
from edgekit.runtimes.llamacpp import default_threads
from edgekit.sources import infer_task, resolve_source
from edgekit.version import __version__

__all__ = ["export_gguf", "gate_gguf", "Artifact"]

GATE_CONTEXT = 512  # context for the gate's llama.cpp model; grown when the prompts need more


class _LlamaTokenizer:
    """What the reference side needs from a tokenizer: llama.cpp's own token ids."""

    def __init__(self, model):
        self.model = model

    def encode(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special)


def _open_for_gate(path: Path, prompts: list[str], threads: int | None):
    """The artifact in llama.cpp with every position's logits, with a context just large enough for the prompts
    (``logits_all`` keeps a context x vocabulary float buffer: 4096 x 49152 would be 800 MB)."""
    from edgekit.deps import llama_cpp_module
    from edgekit.runtimes.llamacpp import LlamaCppModel

    threads = threads or default_threads()
    probe = LlamaCppModel(path, threads=1, context=64)
    try:
        need = max(len(probe.tokenize(p)) for p in prompts) + 1
        trained = probe.trained_context
    finally:
        probe.close()
    if trained and need > trained:
        raise ConfigError(f"a gate prompt is {need - 1} tokens, longer than the model's context of {trained}",
                          param="prompts")
    context = max(need, min(GATE_CONTEXT, trained or GATE_CONTEXT))
    llama_cpp_module("GGUF export")
    return LlamaCppModel(path, threads=threads, context=context, logits_all=True)


# The last reference computed, keyed by source weights, config, prompts and token ids: exporting several
# quantizations of one model in one process (the benchmark, a test session) runs transformers once.
_REFERENCE_CACHE: dict[tuple, object] = {}


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run the transformers reference on ``n`` threads (restored afterwards). On a busy 2-core machine the
    default 2 threads took 56 s for the SmolLM2 reference against 8 s for 1 (OpenMP threads spin too)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _reference(src, prompts: list[str], model, allow_pickle: bool, threads: int | None, progress: Progress):
    tok = _LlamaTokenizer(model)
    ids = tuple(tuple(tok.encode(p)) for p in prompts)
    config_digest = hashlib.sha256(json.dumps(src.config, sort_keys=True).encode()).hexdigest()
    key = (src.info.weights_sha256 or str(src.path), config_digest, prompts_digest(prompts), ids)
    if key not in _REFERENCE_CACHE:
        with _torch_threads(threads or default_threads()):
            reference = compute_reference("decoder", src.path, prompts, tok, allow_pickle=allow_pickle, progress=progress)
        _REFERENCE_CACHE.clear()
        _REFERENCE_CACHE[key] = reference
    return _REFERENCE_CACHE[key]


def _gate_file(path: Path, prompts: list[str], precision: str, limits: dict, reference, src,
               allow_pickle: bool, threads: int | None, progress: Progress):
    model = _open_for_gate(path, prompts, threads)
    try:
        if reference is None:
            reference = _reference(src, prompts, model, allow_pickle, threads, progress)
        report = gate(model, reference, precision, limits, label=f"{precision} gguf", progress=progress)
    finally:
        model.close()
    progress.log(format_gate_line(precision, report))
    return report, reference


def export_gguf(
    source: str | Path,
    out: str | Path,
    *,
    quant: str = "f16",
    prompts: str | Path | None = None,
    force: bool = False,
    thresholds: dict[str, float] | None = None,
    run_gate: bool = True,
    allow_pickle: bool = False,
    llama_cpp_converter: str | Path | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    postprocess: Callable[[Path], None] | None = None,
) -> Artifact:
    """Export ``source`` to a GGUF artifact folder ``out`` and gate it; return the :class:`Artifact`.

    ``quant``: f32 | f16 | bf16 | q8_0 | q6_k | q5_k_m | q4_k_m | q4_0. ``thresholds``: overrides of the
    gate's default bounds for ``quant`` (``{"kl_mean": 0.2}``). ``llama_cpp_converter``: path to llama.cpp's
    convert_hf_to_gguf.py, used instead of edgekit's converter (for architectures edgekit does not cover).
    ``threads``: threads for the gate (llama.cpp and the transformers reference) and the quantizer
    (default: half the cores for the gate, all for the quantizer). ``postprocess``: a function called with the
    path of the converted (f32/f16/bf16) GGUF before it is gated and quantized, for custom edits; the gate
    checks its result like everything else.
    """
    from edgekit.exporters.gguf.convert import find_converter

    progress = ensure(progress)
    q = quants.export_quant("gguf", quant)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}", param="threads")
    out = check_output_path(out, force)
    prompt_list = load_prompts(prompts)
    limits = thresholds_for("decoder", q.name, thresholds)
    converter = find_converter(llama_cpp_converter)
    ctx = ExportContext(resolve_source(source, allow_pickle=allow_pickle), q, prompt_list, thresholds)
    if infer_task(ctx.config) != "text-generation":
        raise UnsupportedModelError(
            f"{ctx.path.name} is a {infer_task(ctx.config)} model; GGUF export is for text-generation decoders"
        )
    if converter is None:
        ctx.family("gguf")
    opts = _GgufOptions(run_gate, allow_pickle, threads, converter, postprocess)
    with staged_artifact(out, force, progress) as stage:
        model_file, params, gates = _convert_quantize_gate(ctx, stage, limits, opts, progress)
        manifest = _manifest(ctx, stage, model_file, params, gates)
        write_manifest(stage, manifest)
    return Artifact(out, manifest)


@dataclass
class _GgufOptions:
    run_gate: bool
    allow_pickle: bool
    threads: int | None
    converter: Path | None
    postprocess: Callable[[Path], None] | None


def _convert_quantize_gate(ctx: ExportContext, stage: Path, limits: dict, opts: _GgufOptions, progress: Progress):
    """Convert (to the row's own type, or f16 for llama.cpp's quantizer), gate the f16, quantize, gate the result:
    (model file name, the manifest's quantization params, the gate reports)."""
    q = ctx.quant
    model_file = f"model-{q.name}.gguf"
    work = stage / ".work"
    work.mkdir()
    conv_path, converted = _convert_step(ctx, work, q.name if q.direct else "f16", opts, progress)
    params = {"ftype": q.name.upper(), "llama_ftype": int(q.llama_ftype()), **converted}
    gates: list[GateReport] = []
    reference = None
    if opts.run_gate and not q.direct:
        reference = _gate_step(ctx, conv_path, "f16", thresholds_for("decoder", "f16"), None, gates, opts, progress)
    if q.direct:
        os.replace(conv_path, stage / model_file)
        params["intermediate"] = None
    else:
        with progress.step(f"quantize: {q.name} with llama.cpp (llama_model_quantize)"):
            params.update(quantize(conv_path, stage / model_file, q.name, threads=opts.threads))
        conv_path.unlink()
    work.rmdir()
    if opts.run_gate:
        _gate_step(ctx, stage / model_file, q.name, limits, reference, gates, opts, progress)
    return model_file, params, gates


def _convert_step(ctx: ExportContext, work: Path, out_type: str, opts: _GgufOptions,
                  progress: Progress) -> tuple[Path, dict]:
    """The converted GGUF (edgekit's converter, or llama.cpp's), after the user's postprocess; and what the
    manifest records of the conversion."""
    from edgekit.exporters.gguf.convert import convert, convert_with_llama_cpp

    conv_path = work / f"model-{out_type}.gguf"
    if opts.converter is not None:
        result = convert_with_llama_cpp(opts.converter, ctx.source, conv_path, out_type, progress=progress)
    else:
        result = convert(ctx.source, conv_path, out_type, progress=progress, ctx=ctx)
    if opts.postprocess is not None:
        opts.postprocess(conv_path)
    return conv_path, {
        "converter": "edgekit" if opts.converter is None else opts.converter.name,
        "gguf_arch": result.gguf_arch, "tokenizer": result.vocab_model, "tokenizer_pre": result.pre,
    }


def _gate_step(ctx: ExportContext, path: Path, precision: str, limits: dict, reference, gates: list,
               opts: _GgufOptions, progress: Progress):
    report, reference = _gate_file(path, ctx.prompts, precision, limits, reference, ctx.source, opts.allow_pickle,
                                   opts.threads, progress)
    gates.append(report)
    raise_if_failed(report, f"{report.precision} GGUF")
    return reference


def _manifest(ctx: ExportContext, stage: Path, model_file: str, params: dict, gates: list[GateReport]) -> Manifest:
    return Manifest(
        format="gguf",
        task="text-generation",
        precision=ctx.quant.name,
        quantization=Quantization(method="llama.cpp" if not ctx.quant.direct else "none", params=params),
        model_file=model_file,
        model=ctx.info,
        source=ctx.source.info,
        files=list_files(stage),
        versions={"edgekit": __version__, **package_versions(
            "gguf", "llama_cpp_python", "torch", "transformers", "tokenizers", "safetensors")},
        gate=gates[-1] if gates else skipped_report("decoder", ctx.prompts),
        stage_gates=gates[:-1],
        created_at=now_iso(),
    )


def gate_gguf(
    artifact: str | Path,
    source: str | Path,
    *,
    prompts: str | Path | None = None,
    thresholds: dict[str, float] | None = None,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> GateReport:
    """Re-run the quality gate of an existing GGUF artifact against its original model."""
    progress = ensure(progress)
    art = Artifact.open(artifact)
    if art.manifest.format != "gguf":
        raise ConfigError(f"{artifact} is a {art.manifest.format} artifact, not GGUF: use edgekit.gate_artifact",
                          param="artifact")
    prompt_list = load_prompts(prompts)
    src = resolve_source(source, allow_pickle=allow_pickle)
    check_source_matches(art.manifest, src, artifact)  # before the reference model runs
    limits = thresholds_for("decoder", art.manifest.precision, thresholds)
    report, _ = _gate_file(art.model_path, prompt_list, art.manifest.precision, limits, None, src, allow_pickle,
                           threads, progress)
    return check_recorded(report, art.manifest.gate)
