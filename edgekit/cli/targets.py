"""``edgekit targets list | show | detect``: device profiles for prediction, and the host measured."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from edgekit.cli import app
from edgekit.cli.options import force_option, json_option
from edgekit.cli.output import err, out, print_json, print_table

targets_app = typer.Typer(
    help="Device profiles (presets, your own TOML files) that bench and predict use; 'detect' measures this machine.",
    no_args_is_help=True,
)
app.add_typer(targets_app, name="targets")

TARGET_HELP = "A preset name (see 'edgekit targets list'), 'host' (this machine, measured), or a path to a .toml profile."


def _num(profile, field: str) -> str:
    v = getattr(profile, field)
    return "-" if v is None else f"{v.value:g}"


@targets_app.command("list")
def list_cmd(as_json: bool = json_option("Print the profiles' key numbers as JSON.")):
    """List the preset target profiles with their key numbers (GB = 1e9 bytes)."""
    from edgekit.targets import load_preset, preset_names

    profiles = [load_preset(n) for n in preset_names()]
    if as_json:
        print_json([{**p.summary(), "published_measurements": len(p.published)} for p in profiles])
        return
    table = Table(title="target presets", title_justify="left")
    for col in ("name", "cores", "threads", "RAM GB", "budget GB", "GB/s", "fp32 GFLOP/s", "int8 GOP/s", "published",
                "note"):
        table.add_column(col, justify="left" if col in ("name", "note") else "right", no_wrap=col == "name")
    for p in profiles:
        table.add_row(p.name, str(p.total_cores), str(p.threads), _num(p, "ram_gb"), _num(p, "app_ram_budget_gb"),
                      _num(p, "memory_bandwidth_gbs"), _num(p, "peak_gflops_fp32"), _num(p, "peak_gops_int8"),
                      str(len(p.published)), "prediction only" if p.prediction_only else "")
    print_table(table)
    out.print("Add your own device with a TOML file (copy one: 'edgekit targets show raspberry-pi-5 --toml') "
              "and pass --target path/to/device.toml.")


@targets_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help=TARGET_HELP, show_default=False),
    as_json: bool = json_option("Print the whole profile as JSON."),
    as_toml: bool = typer.Option(False, "--toml", help="Print the profile as TOML (a template for your own device)."),
):
    """Show one profile: every number with its source, and the published measurements it is checked against."""
    from edgekit.targets import resolve_target
    from edgekit.targets.profile import profile_to_toml

    p = resolve_target(name)
    if as_json:
        print_json(p.model_dump(mode="json"))
        return
    if as_toml:
        out.print(profile_to_toml(p), markup=False, highlight=False)
        return
    table = Table(title=f"target {p.name}: {p.description}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    table.add_column("source")
    table.add_row("chip", p.soc, "")
    table.add_row("cores", ", ".join(f"{c.cores} x {c.name}" + (f" @ {c.max_ghz:g} GHz" if c.max_ghz else "")
                                     for c in p.clusters), "")
    table.add_row("threads", str(p.threads), "threads a runtime should use")
    table.add_row("ISA", ", ".join(p.isa) or "-", "")
    for field, label in (("ram_gb", "RAM (GB)"), ("app_ram_budget_gb", "app RAM budget (GB)"),
                         ("memory_bandwidth_gbs", "bandwidth (GB/s)"), ("single_thread_bandwidth_gbs", "bandwidth, 1 thread"),
                         ("peak_gflops_fp32", "fp32 GFLOP/s"), ("single_thread_gflops_fp32", "fp32 GFLOP/s, 1 thread"),
                         ("peak_gops_int8", "int8 GOP/s"), ("single_thread_gops_int8", "int8 GOP/s, 1 thread")):
        v = getattr(p, field)
        if v is not None:
            table.add_row(label, f"{v.value:g}", v.source)
    print_table(table)
    if p.published:
        pub = Table(title="published measurements", title_justify="left")
        for col in ("model", "quant", "threads", "decode tok/s", "prefill tok/s", "tolerance", "runtime", "source"):
            pub.add_column(col)
        for r in p.published:
            pub.add_row(r.model, r.quant, str(r.threads), f"{r.decode_tps:g}" if r.decode_tps else "-",
                        f"{r.prefill_tps:g}" if r.prefill_tps else "-",
                        f"±{r.decode_tolerance:.0%} / ±{r.prefill_tolerance:.0%}", r.runtime, r.source)
        print_table(pub)
        for r in p.published:
            if r.tolerance_note:
                out.print(f"{r.model}: {r.tolerance_note}", markup=False)
    if p.notes:
        out.print(p.notes, markup=False)


@targets_app.command("detect")
def detect_cmd(
    save: Optional[Path] = typer.Option(None, "--save", metavar="FILE.toml", help="Write the detected profile to this .toml file."),
    name: str = typer.Option("host", "--name", help="Profile name to record (lower case, digits, '-')."),
    force: bool = force_option("Replace the --save file if it is a target profile (any other file is refused)."),
    as_json: bool = json_option("Print the detected profile as JSON."),
    device: Optional[str] = typer.Option(
        None, "--device", metavar="NAME", help="Measure this registered device over SSH instead of this machine: "
        "the profile (named after it) is kept, in --save or the config folder, for its predictions."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key", help="With --device: trust a new host key."),
):
    """Read this machine (cores, ISA flags, RAM) and measure memory bandwidth and fp32/int8 compute (a few seconds).

    The measurements are short microbenchmarks (numpy copies, onnxruntime MatMul/MatMulInteger) with one
    thread and with all threads; a busy machine measures lower, and the profile notes how long threads
    waited for a CPU.
    """
    from edgekit.fileio import check_output_file
    from edgekit.progress import RichProgress
    from edgekit.targets.detect import detect
    from edgekit.errors import ConfigError
    from edgekit.targets.profile import NAME_RE, check_profile_path, save_profile

    if device is not None:  # measured on the device (edgekit/devices), kept as its profile
        from edgekit.devices.bench import detect_device

        profile, written = detect_device(device, save=save, force=force, accept_new_host_key=accept_new_host_key)
        print_json(profile.model_dump(mode="json")) if as_json else _print_profile(profile)
        err.print(f"saved {written}: bench --device {device} now predicts with it", markup=False)
        return
    if not NAME_RE.match(name):
        raise ConfigError(f"--name {name!r} must be lower case letters, digits, '.', '_' or '-'")
    if save is not None and save.suffix != ".toml":
        raise ConfigError(f"--save {save}: a target profile file must end in .toml")
    if save is not None and save.exists() and not force:
        raise ConfigError(f"{save} already exists: choose another --save path or pass --force")
    if save is not None:  # before measuring: a folder that takes the file; --force replaces only a target profile
        check_output_file(save, "save")
        check_profile_path(save, force)
    profile = detect(name=name, progress=RichProgress(err))
    written = save_profile(profile, save, force=force) if save is not None else None
    if as_json:
        print_json(profile.model_dump(mode="json"))
    else:
        _print_profile(profile)
    if written:
        err.print(f"[green]saved[/] {written} (use it with --target {written})")


def _print_profile(p) -> None:
    table = Table(title=f"detected {p.name}: {p.soc}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", justify="right")
    table.add_row("cores", ", ".join(f"{c.cores} x {c.name}" for c in p.clusters))
    table.add_row("threads", str(p.threads))
    table.add_row("ISA", ", ".join(p.isa) or "-")
    for field, label in (("ram_gb", "RAM (GB)"), ("app_ram_budget_gb", "app RAM budget (GB)"),
                         ("memory_bandwidth_gbs", f"bandwidth, {p.threads} threads (GB/s)"),
                         ("single_thread_bandwidth_gbs", "bandwidth, 1 thread (GB/s)"),
                         ("peak_gflops_fp32", f"fp32 GFLOP/s, {p.threads} threads"),
                         ("single_thread_gflops_fp32", "fp32 GFLOP/s, 1 thread"),
                         ("peak_gops_int8", f"int8 GOP/s, {p.threads} threads"),
                         ("single_thread_gops_int8", "int8 GOP/s, 1 thread")):
        v = getattr(p, field)
        if v is not None:
            table.add_row(label, f"{v.value:g}")
    print_table(table)
    out.print(p.notes, markup=False)
