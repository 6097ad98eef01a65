"""``edgekit package``: one folder an Android or iOS app bundles; also how ``edgekit inspect`` shows a package."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgekit.cli import app
from edgekit.cli.options import context_option, force_option, json_option, threads_option
from edgekit.cli.output import err, fields_table, gate_table, human_size, out, print_json, print_table


class PlatformChoice(str, Enum):
    android = "android"
    ios = "ios"
    generic = "generic"


class EpChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    nnapi = "nnapi"
    coreml = "coreml"
    xnnpack = "xnnpack"


def _summary(m, path: str) -> Table:
    mem = m.memory
    fit = "-"
    if mem.budget_bytes is not None:
        fit = (f"{human_size(mem.total_bytes)} of {human_size(mem.budget_bytes)} ({mem.target}): "
               + ("[green]fits[/]" if mem.fits else "[red]does not fit[/]"))
    rows = [
        ("platform", m.platform), ("model", f"{m.name} ({m.format}, {m.task}, {m.precision})"),
        ("model file", m.model_file), ("runtime", f"{m.runtime} (settings in {m.runtime_config})"),
        ("context", str(m.context or "-")), ("threads", f"{m.threads or 'runtime default'} ({m.threads_source})"),
        ("memory", f"weights {human_size(mem.weights_bytes)} + KV cache {human_size(mem.kv_bytes)} = "
                   f"{human_size(mem.total_bytes)}"),
        ("RAM budget", fit),
        ("tokenizer", m.tokenizer.file or "in the model file" + (f" ({m.tokenizer.note})" if m.tokenizer.note else "")),
        ("chat template", "-" if m.chat is None else
         f"Jinja + per-role strings ({'exact' if m.chat.exact else 'approximate: ' + m.chat.note})"),
        ("gate", f"{m.gate.status} ({m.gate.n_prompts} prompts)" if m.gate.status != "skipped" else "skipped"),
        ("created", m.created_at),
    ]
    return fields_table(f"package {path}", rows, markup=True)


def _sizes(report: dict) -> Table:
    t = Table(title="size report", title_justify="left")
    t.add_column("what")
    t.add_column("bytes", justify="right")
    t.add_column("size", justify="right")
    t.add_column("note")
    t.add_row("model", f"{report['model_bytes']:,}", human_size(report["model_bytes"]), "")
    t.add_row("tokenizer files", f"{report['tokenizer_bytes']:,}", human_size(report["tokenizer_bytes"]), "")
    t.add_row("package", f"{report['package_bytes']:,}", human_size(report["package_bytes"]),
              "every file but package.json and size_report.json (a few KB)")
    rt = report.get("runtime") or {}
    est = rt.get("estimated_bytes")
    t.add_row(f"runtime: {rt.get('name', '-')}", f"{est:,}" if est else "-", human_size(est) if est else "-",
              rt.get("method") or rt.get("note", ""))
    return t


def _sources(report: dict) -> list[str]:
    rt = report.get("runtime") or {}
    lines = [f"  {f['name']}: {f['bytes']:,} B, {f['what']} ({f['source']})" for f in rt.get("figures", [])]
    return ["runtime size estimated from ONNX Runtime's published minimal-build sizes:", *lines] if lines else []


def show_package(path: Path, *, as_json: bool, verify: bool) -> None:
    """``edgekit inspect`` on a package folder: its manifest, size report and files (sha256 checked)."""
    from edgekit.fileio import read_json_dict
    from edgekit.package.schema import read_package

    m = read_package(path, verify=verify)
    report = read_json_dict(path / "size_report.json")
    if as_json:
        print_json({"path": str(path), "verified": verify, "package": m.model_dump(mode="json"),
                    "size_report": report})
        return
    print_table(_summary(m, str(path)))
    if report:
        print_table(_sizes(report))
    gates = [(g.precision or "stage", g) for g in m.stage_gates] + [(m.precision, m.gate)]
    print_table(gate_table(gates, title="quality gate (from the artifact)"))
    files = Table(title="files", title_justify="left")
    for col in ("path", "size", "sha256"):
        files.add_column(col, justify="right" if col == "size" else "left")
    for f in m.files:
        files.add_row(f.path, human_size(f.size), f.sha256[:16] + "…")
    print_table(files)
    if verify:
        out.print(f"[green]verified[/]: all {len(m.files)} files match their sha256")


@app.command("package")
def package_cmd(
    artifact: Path = typer.Argument(..., help="An artifact folder made by 'edgekit export' (ONNX or GGUF).",
                                    show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Package folder to create (must not exist unless --force).",
                                show_default=False),
    platform: Optional[PlatformChoice] = typer.Option(
        None, "--platform", help="android | ios | generic: the ORT optimisations, EPs and llama.cpp settings to use "
        "(default: the target's, else generic)."),
    target: Optional[str] = typer.Option(
        None, "--target", help="A target profile (pixel-8, iphone-15-pro, a .toml file): fills threads and context "
        "and refuses a model whose weights + KV cache exceed its app RAM budget."),
    context: Optional[int] = context_option("Decoders: the context to allocate (checked against the target's RAM "
                                            "budget); default: the largest that fits, <= 4096."),
    threads: Optional[int] = threads_option("Threads for the runtime (default: the target's big cores; 4 on android, "
                                            "2 on ios)."),
    ep: EpChoice = typer.Option(EpChoice.auto, "--ep", help="ONNX: the execution provider runtime.json puts first; "
                                "auto = what onnxruntime's mobile-usability checker recommends."),
    mmap: Optional[bool] = typer.Option(None, "--mmap/--no-mmap", help="GGUF: llama.cpp's use_mmap (default on).",
                                        show_default=False),
    force: bool = force_option("Replace OUTPUT if it is an edgekit package or artifact, or an empty folder (only "
                               "once the new package is complete)."),
    as_json: bool = json_option("Print package.json and the size report as JSON."),
):
    """Package an artifact for a phone app: ORT-format model, operator config and EP report (ONNX) or the .gguf
    with llama.cpp settings (GGUF); tokenizer, chat template, package.json and a size report.

    Bad inputs print one line and exit 2, leaving nothing at OUTPUT.
    """
    from edgekit.package import package
    from edgekit.progress import RichProgress

    pkg = package(artifact, output, platform=platform.value if platform else None, target=target, context=context,
                  threads=threads, ep=ep.value, mmap=mmap, force=force, progress=RichProgress(err))
    if as_json:
        print_json({"path": str(pkg.path), "package": pkg.manifest.model_dump(mode="json"),
                    "size_report": pkg.size_report})
        return
    print_table(_summary(pkg.manifest, str(pkg.path)), _sizes(pkg.size_report))
    for line in _sources(pkg.size_report):
        out.print(line, markup=False)
    build = pkg.size_report.get("reduced_build")
    if build:
        from edgekit.fileio import read_json_dict

        runtime = read_json_dict(pkg.path / "runtime.json")
        eps = " > ".join(p.get("name", "?") for p in runtime.get("execution_providers", []))
        out.print(f"execution providers: {eps} ({runtime.get('recommended_because', '')})", markup=False)
        out.print(f"reduced build: {build['command']}", markup=False)
    out.print(f"[green]wrote[/] {pkg.path}  ({len(pkg.manifest.files) + 1} files, {human_size(pkg.size_bytes)})")
