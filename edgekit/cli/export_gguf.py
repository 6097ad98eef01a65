"""``edgekit export gguf``: Hugging Face -> GGUF with edgekit's converter, llama.cpp's quantizer and the gate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgekit import quants
from edgekit.cli.export import (
    SOURCE_HELP,
    THRESHOLD_HELP,
    export_app,
    families_option,
    quant_option,
    report_gate_failure,
    report_result,
)
from edgekit.cli.options import force_option, json_option, threads_option
from edgekit.cli.output import err
from edgekit.errors import QualityGateError


def _made_by(format: str = "gguf") -> str:
    direct = ", ".join(q.name for q in quants.rows(format, export=True) if q.direct)
    return (f" {direct} are written by the converter; the others are made by llama.cpp's quantizer from an f16 "
            "intermediate (which is gated too).")


@export_app.command("gguf")
def export_gguf_cmd(
    source: str = typer.Argument(..., help=SOURCE_HELP, show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Artifact folder to create (must not exist unless --force).", show_default=False),
    quant: quant_option("gguf", "--quant", "-q", more_help=_made_by()) = "f16",
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Gate prompts, one per line (default: 20 built-in prompts)."),
    force: bool = force_option(
        "Replace OUTPUT if it is an edgekit artifact or an empty folder (only once the new artifact is complete); "
        "any other folder is refused.",
    ),
    threshold: List[str] = typer.Option([], "--threshold", help=THRESHOLD_HELP, show_default=False),
    no_gate: bool = typer.Option(False, "--no-gate", help="Skip the quality gate (the manifest records it as skipped)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) weights; loading a pickle runs code."),
    llama_cpp_converter: families_option(
        "gguf", Optional[Path], "--llama-cpp-converter", envvar="EDGEKIT_LLAMA_CPP_CONVERTER", show_envvar=True,
        help="llama.cpp's convert_hf_to_gguf.py: convert with it instead of edgekit's converter, which covers the "
        "model types {families}; quantization and the gate stay the same.",
    ) = None,
    threads: Optional[int] = threads_option("Threads for the gate (llama.cpp and the transformers reference) and the quantizer."),
    as_json: bool = json_option("Print the manifest as JSON."),
):
    """Convert to GGUF (edgekit's converter for the model types --llama-cpp-converter names), quantize with
    llama.cpp, and gate the result against the original transformers model.

    The tokenizer is checked against llama.cpp's own before the file is written: a tokenizer llama.cpp
    cannot reproduce is an error, not a GGUF that tokenizes differently. The artifact is built beside
    OUTPUT and renamed into place only when the gate passes: a failed gate exits 1 and leaves nothing.
    """
    from edgekit.exporters.gguf import export_gguf
    from edgekit.progress import RichProgress
    from edgekit.quality import parse_threshold_overrides

    try:
        artifact = export_gguf(
            source, output, quant=quant.value, prompts=prompts, force=force,
            thresholds=parse_threshold_overrides(threshold), run_gate=not no_gate, allow_pickle=allow_pickle,
            llama_cpp_converter=llama_cpp_converter, threads=threads, progress=RichProgress(err),
        )
    except QualityGateError as exc:
        report_gate_failure(exc)
        raise
    report_result(artifact, as_json)
