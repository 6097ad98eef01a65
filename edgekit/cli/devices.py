"""``edgekit devices add | list | check | setup | remove``, and the tables of ``edgekit bench --device``."""

from __future__ import annotations

from typing import Optional

import typer

from edgekit.cli import app
from edgekit.cli.options import force_option, json_option
from edgekit.cli.output import err, fields_table, human_size, out, print_json, print_table, rows_table

devices_app = typer.Typer(
    help="Devices reached over SSH (~/.ssh/config, the agent and known_hosts are honoured): add one, set edgekit's "
         "runtime side up there, then 'edgekit bench ARTIFACT --device NAME'.",
    no_args_is_help=True,
)
app.add_typer(devices_app, name="devices")

ACCEPT_HELP = "Trust the device's SSH host key if known_hosts has none for it yet (a changed key is always refused)."


def _table(rows: list[dict[str, str]], title: str):
    """Numbers (tok/s, predictions, errors, items, RSS) right-justified, the rest left."""
    return rows_table(rows, title, left=lambda c: not any(w in c for w in ("tok/s", "pred", "err", "items", "RSS")))


@devices_app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="A short name (lower case, digits, '-'): used by --device and as the "
                                         "name of its target profile.", show_default=False),
    address: str = typer.Argument(..., help="ssh://user@host[:port], user@host, or a Host alias of ~/.ssh/config.",
                                  show_default=False),
    memory_limit_mb: Optional[int] = typer.Option(
        None, "--memory-limit-mb", min=16, help="Resident memory a bench run may use on the device: above it the run "
                                                "is killed (SIGKILL, like a cgroup limit) and reported as out of memory."),
    remote_dir: str = typer.Option(".edgekit", "--remote-dir", help="edgekit's folder on the device, in its home."),
    force: bool = force_option("Replace a device of the same name."),
    as_json: bool = json_option("Print the device record as JSON."),
):
    """Register a device (nothing is sent to it; 'edgekit devices check NAME' connects)."""
    from edgekit.devices.registry import add_device, registry_path

    device = add_device(name, address, memory_limit_mb=memory_limit_mb, remote_dir=remote_dir, force=force)
    if as_json:
        print_json(device.model_dump(mode="json"))
        return
    err.print(f"[green]added[/] {device.name} ({device.address}) to {registry_path()}; next: "
              f"'edgekit devices check {name}', then 'edgekit devices setup {name}'", markup=True)


@devices_app.command("list")
def list_cmd(as_json: bool = json_option("Print the devices as JSON.")):
    """List the registered devices and what is set up on each."""
    from edgekit.devices.registry import load_registry, registry_path

    reg = load_registry()
    if as_json:
        print_json([d.model_dump(mode="json") for d in reg.devices])
        return
    if not reg.devices:
        out.print(f"no devices yet ({registry_path()}): add one with 'edgekit devices add NAME ssh://user@host'")
        return
    print_table(_table([{"name": d.name, "address": d.address, "python": d.python or "not set up",
                         "edgekit": d.edgekit_version or "-", "build": d.build or "-",
                         "memory limit": f"{d.memory_limit_mb} MB" if d.memory_limit_mb else "-",
                         "profile": d.profile or "-"} for d in reg.devices], f"devices ({registry_path()})"))


@devices_app.command("check")
def check_cmd(
    name: str = typer.Argument(..., show_default=False, help="A registered device."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key", help=ACCEPT_HELP),
    as_json: bool = json_option("Print the facts as JSON."),
):
    """Connect and report: OS/arch, Python, CPU model and cores, RAM total/available, free disk, edgekit there."""
    from edgekit.devices import remote
    from edgekit.devices.registry import get_device
    from edgekit.devices.ssh import connect

    device = get_device(name)
    with connect(device, accept_new_host_key=accept_new_host_key) as conn:
        facts = remote.check(conn)
        if conn.accepted_key:
            err.print(f"added the host key of {device.name} ({conn.accepted_key}) to ~/.ssh/known_hosts")
    facts = {"device": name, "address": device.address, "reachable": True, **facts}
    if as_json:
        print_json(facts)
        return
    ek = facts.get("edgekit") or {}
    rows = [("reachable", "yes"), ("OS / arch", f"{facts['os']} {facts['arch']} ({facts['kernel']})"),
            ("Python", f"{facts['python']} ({facts['python_path']})"), ("CPU", facts["cpu"]),
            ("cores", f"{facts['cores']} ({facts['usable_cores']} usable)"),
            ("RAM", f"{human_size(facts['ram_bytes'] or 0)} total, {human_size(facts['ram_available_bytes'] or 0)} "
                    "available"),
            ("free disk", f"{human_size(facts['disk_free_bytes'])} in ~/{device.remote_dir}"),
            ("edgekit", f"{ek['edgekit']} with {device.python}" if ek else
             facts.get("edgekit_error") or f"not set up: 'edgekit devices setup {name}'")]
    print_table(fields_table(f"device {name} ({device.address})", rows))


@devices_app.command("setup")
def setup_cmd(
    name: str = typer.Argument(..., show_default=False, help="A registered device."),
    python: Optional[str] = typer.Option(
        None, "--python", metavar="PATH", help="Use this Python on the device (an environment that has onnxruntime, "
                                               "tokenizers, numpy; llama-cpp-python for GGUF) instead of a private "
                                               "virtual environment."),
    gguf: bool = typer.Option(True, "--gguf/--no-gguf", help="Private environment: also install llama-cpp-python."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key", help=ACCEPT_HELP),
    as_json: bool = json_option("Print what was installed as JSON."),
):
    """Install this edgekit's runtime side on the device from a wheel built here (no torch); a cache hit when it is."""
    from edgekit.devices.setup import setup_device

    result = setup_device(name, python=python, gguf=gguf, accept_new_host_key=accept_new_host_key)
    if as_json:
        print_json(result)
        return
    if result["cached"]:
        out.print(f"{name}: edgekit {result['edgekit']['edgekit']} build {result['build']} already set up with "
                  f"{result['python']} (nothing sent)")
        return
    runtimes = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["edgekit"]["runtimes"].items())
    heavy = [k for k, v in result["edgekit"].get("heavy", {}).items() if v]
    how = "private virtual environment" if result["mode"] == "venv" else "existing Python, edgekit unpacked beside it"
    out.print(f"{name}: edgekit {result['edgekit']['edgekit']} build {result['build']} set up with {result['python']} "
              f"({how}); sent {human_size(result['bytes_sent'])}", markup=False)
    out.print(f"runtimes: {runtimes}" + (f"; also present there: {', '.join(heavy)}" if heavy else ""), markup=False)
    if result["installed"]:
        out.print("installed: " + ", ".join(result["installed"]), markup=False)


@devices_app.command("remove")
def remove_cmd(
    name: str = typer.Argument(..., show_default=False, help="A registered device."),
    purge: bool = typer.Option(False, "--purge", help="Also delete edgekit's folder on the device (connects)."),
    accept_new_host_key: bool = typer.Option(False, "--accept-new-host-key", help=ACCEPT_HELP),
):
    """Forget a device (with --purge, also delete ~/.edgekit there: its venv and pushed artifacts)."""
    import shlex

    from edgekit.devices import remote
    from edgekit.devices.registry import get_device, remove_device
    from edgekit.devices.ssh import connect

    device = get_device(name)
    if purge:
        with connect(device, accept_new_host_key=accept_new_host_key) as conn:
            remote.shell(conn, f"rm -rf {shlex.quote(device.remote_dir)}", "removing edgekit's folder")
    remove_device(name)
    err.print(f"removed {name}" + (f" (and ~/{device.remote_dir} on it)" if purge else ""))


# ---- bench --device ----------------------------------------------------------------------

def print_device_report(report) -> None:
    from edgekit.profiler.report import device_rows

    print_table(_table(device_rows(report), "measured on the devices vs edgekit's prediction (error = predicted / "
                                            "measured - 1)"))
    for d in report.devices:
        sent = f"sent {human_size(d.bytes_sent)}, {d.pushes_skipped} of {d.pushes} pushes skipped (already there)"
        line = f"{d.name} ({d.address}): {d.status}; {sent}" + (f"; {d.error}" if d.error else "")
        err.print(line, markup=False, highlight=False)
    for r in report.results:
        if r.device is not None and r.error:
            err.print(f"{r.device} / {r.label}: {r.error}", markup=False, highlight=False)
