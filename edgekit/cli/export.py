"""``edgekit export onnx|gguf`` and ``edgekit gate``.

``export onnx`` has two paths (``--via``): decoders of the families the fused builder covers are written as
one fused graph straight from the safetensors (:mod:`edgekit.exporters.onnx_fused`); everything else is traced
with optimum-onnx and quantized with onnxruntime (:mod:`edgekit.exporters.onnx`). Both end in the quality gate.
"""

from __future__ import annotations

import importlib.util
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer

from edgekit import quants
from edgekit.cli import app
from edgekit.cli.options import force_option, json_option, threads_option
from edgekit.cli.output import err, gate_table, human_size, out, print_json, print_table
from edgekit.errors import ConfigError, QualityGateError
from edgekit.fileio import not_a_file
from edgekit.names import TASK_CHOICES

export_app = typer.Typer(
    help="Convert a Hugging Face model into an artifact folder (ONNX or GGUF), checked by the quality gate.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")


Task = Enum("Task", {name.replace("-", "_"): name for name in TASK_CHOICES}, type=str)


class Via(str, Enum):
    auto = "auto"
    fused = "fused"
    optimum = "optimum"


class Int8Mode(str, Enum):
    auto = "auto"
    dynamic = "dynamic"
    blockwise = "blockwise"


def quant_option(format: str, *names: str, more_help: str = ""):
    """The ``format`` exporter's quantization option: its choices and help read from :mod:`edgekit.quants`.

    Commands annotate their quantization parameter with a call to this function. The command modules have
    ``from __future__ import annotations``, so the annotation is evaluated only when Typer builds the
    command (``typer.main.get_command``), from the table as it is then: a new row is a new choice.
    """
    choice = Enum(f"{format.capitalize()}Quant", {c: c for c in quants.choices(format)}, type=str)
    return Annotated[choice, typer.Option(*names, help=quants.help_text(format) + more_help)]


def families_option(exporter: str, type_, *names: str, help: str, **kwargs):
    """An option whose help names the model types ``exporter`` covers (``{families}`` in ``help``), read from
    :mod:`edgekit.families` when Typer builds the command, as :func:`quant_option` reads the quant table."""
    from edgekit import families

    return Annotated[type_, typer.Option(*names, help=help.format(families=families.help_list(exporter)), **kwargs)]


SOURCE_HELP = (
    "A local Hugging Face model folder (works offline), a hub id such as org/name (online), "
    "or packaged:minilm / packaged:smollm2 for the small models edgekit's test packages ship."
)
THRESHOLD_HELP = (
    "Override one gate bound as METRIC=VALUE (repeatable). Metrics: kl_mean, kl_max, top1 (decoders); "
    "cos_mean, cos_min (encoders); label_agreement, prob_diff_max (classifiers)."
)


def load_postprocess(spec: str) -> Callable:
    """``path/to/file.py:function`` -> the function."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise ConfigError(f"--postprocess {spec!r} must look like path/to/file.py:function")
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"--postprocess file {path} {not_a_file(path)}")
    module_spec = importlib.util.spec_from_file_location(f"edgekit_postprocess_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report, do not crash
        raise ConfigError(f"--postprocess file {path} failed to import: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"--postprocess: {path} has no function {name!r}")
    return fn


def report_result(artifact, as_json: bool) -> None:
    m = artifact.manifest
    if as_json:
        print_json({"path": str(artifact.path), "manifest": m.model_dump(mode="json")})
        return
    gates = [(g.precision or "stage", g) for g in m.stage_gates] + [(m.precision, m.gate)]
    print_table(gate_table(gates))
    out.print(
        f"[green]wrote[/] {artifact.path}  ({m.format}, {m.task}, {m.precision}, "
        f"{human_size(artifact.size_bytes)}, gate {m.gate.status})"
    )


def report_gate_failure(exc: QualityGateError) -> None:
    if exc.report is not None:
        print_table(gate_table([(exc.report.precision or "artifact", exc.report)], title="quality gate (failed)"),
                    console=err)


@export_app.command("onnx")
def export_onnx_cmd(
    source: str = typer.Argument(..., help=SOURCE_HELP, show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Artifact folder to create (must not exist unless --force).", show_default=False),
    task: Task = typer.Option(Task.auto, "--task", help="What the model does; auto reads it from config.json."),
    quant: quant_option("onnx", "--quantize", "--quant", "-q", more_help=" The int8 form: see --int8-mode.") = "none",
    int8_mode: Int8Mode = typer.Option(
        Int8Mode.auto, "--int8-mode",
        help="int8 form: dynamic (quantize_dynamic, per-channel weights, per-tensor activations), blockwise "
        "(MatMulNBits 8-bit, per-block activations); auto = dynamic for encoders, blockwise for decoders.",
    ),
    via: families_option(
        "onnx", Via, "--via",
        help="auto: decoders of covered families ({families}) are built as one fused graph from the "
        "safetensors (fp32/int8/int4), the rest traced with optimum-onnx; fused: insist on the fused graph; "
        "optimum: always trace with optimum-onnx.",
    ) = Via.auto,
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Gate prompts, one per line (default: 20 built-in prompts)."),
    force: bool = force_option(
        "Replace OUTPUT if it is an edgekit artifact or an empty folder (only once the new artifact is complete); "
        "any other folder is refused.",
    ),
    threshold: List[str] = typer.Option([], "--threshold", help=THRESHOLD_HELP, show_default=False),
    no_gate: bool = typer.Option(False, "--no-gate", help="Skip the quality gate (the manifest records it as skipped)."),
    no_optimize: bool = typer.Option(
        False, "--no-optimize",
        help="Keep optimum's decoder graph as traced (by default attention reads the KV cache without repeat_kv copies).",
    ),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) weights; loading a pickle runs code."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit) for hub ids."),
    threads: Optional[int] = threads_option("onnxruntime threads for the gate."),
    postprocess: Optional[str] = typer.Option(
        None, "--postprocess", help="FILE.py:FUNC applied to the traced onnx.ModelProto before quantization (graph edits).",
    ),
    as_json: bool = json_option("Print the manifest as JSON."),
):
    """Export to ONNX and gate the result against the original.

    Decoders of covered families are built as one fused graph from the safetensors; the rest (and --via
    optimum) are traced with optimum-onnx and quantized with onnxruntime (see --via).

    The artifact is built beside OUTPUT and renamed into place only when the gate passes:
    a failed gate exits 1 and leaves nothing at OUTPUT.
    """
    from edgekit.exporters.onnx import export_onnx
    from edgekit.progress import RichProgress
    from edgekit.quality import parse_threshold_overrides

    fn = load_postprocess(postprocess) if postprocess else None
    try:
        artifact = export_onnx(
            source, output, task=task.value, quant=quant.value, prompts=prompts, force=force,
            thresholds=parse_threshold_overrides(threshold), run_gate=not no_gate, allow_pickle=allow_pickle,
            revision=revision, threads=threads, postprocess=fn, int8_mode=int8_mode.value, optimize=not no_optimize,
            via=via.value, progress=RichProgress(err),
        )
    except QualityGateError as exc:
        report_gate_failure(exc)
        raise
    report_result(artifact, as_json)


@app.command("gate")
def gate_cmd(
    artifact: Path = typer.Argument(..., help="An ONNX or GGUF artifact folder.", show_default=False),
    source: str = typer.Option(..., "--source", "-s", help="The original model: " + SOURCE_HELP, show_default=False),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Gate prompts, one per line."),
    threshold: List[str] = typer.Option([], "--threshold", help=THRESHOLD_HELP, show_default=False),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) weights in the source."),
    threads: Optional[int] = threads_option("onnxruntime threads."),
    as_json: bool = json_option("Print the gate report as JSON."),
):
    """Re-run the quality gate of an existing artifact against its original model (exit 1 when it fails)."""
    from edgekit.exporters import gate_artifact
    from edgekit.progress import RichProgress
    from edgekit.quality import parse_threshold_overrides, raise_if_failed

    report = gate_artifact(
        artifact, source, prompts=prompts, thresholds=parse_threshold_overrides(threshold),
        allow_pickle=allow_pickle, threads=threads, progress=RichProgress(err),
    )
    if as_json:
        print_json(report.model_dump(mode="json"))
    else:
        print_table(gate_table([(report.precision or "artifact", report)]))
    raise_if_failed(report)
