"""The CLI's shared pieces (issue 20): one table writer whose tables keep their values on a pipe
(issue 19 §4), one declaration each of --threads, --context, --json and --force, ``packaged:NAME``
resolved in one place (edgekit.load and bench take it), one integer check."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, error_line


def piped(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``edgekit ARGS`` with stdout on a pipe (as ``| tee log`` has it) and no $COLUMNS to widen it."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, env=env, cwd=ROOT)


def assert_full_width(text: str) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) > 80, text  # wider than Rich's pipe default: not squeezed


# ---- one table writer: on a pipe, the table at its natural width ------------------------------

def test_a_table_on_a_pipe_keeps_every_value():
    from edgekit.targets import load_preset, preset_names

    proc = piped("targets", "list")
    assert proc.returncode == 0, proc.stderr
    assert_full_width(proc.stdout)
    for name in preset_names():
        p = load_preset(name)
        row = next(line for line in proc.stdout.splitlines() if f" {name} " in line)
        assert f" {p.total_cores} " in row and f" {p.threads} " in row, row


def test_bench_on_a_pipe_keeps_every_value(cli_artifacts):
    art = cli_artifacts("gguf")
    proc = piped("bench", art, "--runs", "1", "--warmup", "0", "--prompt-tokens", "8", "--gen-tokens", "4",
                 "--threads", "1", "--target", "raspberry-pi-5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_full_width(proc.stdout)
    text = " ".join(proc.stdout.split())
    for header in ("decode tok/s", "token ms p50/p90/p99", "decode tok/s (predicted)", "RAM budget"):
        assert header in text, proc.stdout
    assert f" {art.name} " in proc.stdout and "raspberry-pi-5" in proc.stdout


def test_print_table_fits_a_terminal_and_unfolds_on_a_pipe():
    import io

    from rich.console import Console

    from edgekit.cli.output import print_table, rows_table

    rows = [{"artifact": "a-long-artifact-label-" + "x" * 40, "decode tok/s": "123.4", "note": "y" * 60}]
    pipe = io.StringIO()
    print_table(rows_table(rows, "t", left=("artifact", "note")), console=Console(file=pipe, width=80))
    assert rows[0]["artifact"] in pipe.getvalue() and rows[0]["note"] in pipe.getvalue()
    tty = io.StringIO()
    print_table(rows_table(rows, "t", left=("artifact", "note")),
                console=Console(file=tty, width=80, force_terminal=True, color_system=None))
    assert max(len(line) for line in tty.getvalue().splitlines()) <= 80  # a terminal: fitted, folded, not cut
    assert "…" not in tty.getvalue() and "123.4" in tty.getvalue()


# ---- one declaration each of the shared options ------------------------------------------------

def _commands():
    import typer

    from edgekit.cli import _register, app

    _register()

    def walk(cmd, path):
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, path + [name])
        if not getattr(cmd, "commands", None):
            yield " ".join(path), cmd

    return dict(walk(typer.main.get_command(app), []))


@pytest.mark.parametrize("flag,minimum,is_flag", [("--threads", 1, False), ("--context", 2, False),
                                                  ("--json", None, True), ("--force", None, True)])
def test_shared_options_mean_the_same_everywhere(flag, minimum, is_flag):
    seen = []
    for name, cmd in _commands().items():
        param = next((p for p in cmd.params if flag in getattr(p, "opts", ())), None)
        if param is None:
            continue
        seen.append(name)
        assert param.opts == [flag] and param.help, f"{name} {flag}"
        assert param.is_flag == is_flag, f"{name} {flag}"
        if minimum is not None:
            assert param.min == minimum and param.max is None, f"{name} {flag}"
            assert param.default is None and param.required is False, f"{name} {flag}"
    assert len(seen) >= 3, seen


def test_each_shared_option_is_declared_once():
    import re
    from pathlib import Path

    import edgekit.cli

    option = re.compile(r'typer\.Option\((?:[^()]|\([^()]*\))*?"--(threads|context|json|force)"')
    for path in Path(edgekit.cli.__file__).parent.glob("*.py"):
        if path.name != "options.py":
            found = option.search(path.read_text())
            assert found is None, f"{path.name} declares --{found.group(1)} itself: use edgekit.cli.options"


def test_help_still_explains_the_shared_options(cli):
    proc = cli("bench", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "CPU threads per run" in text and "Context window to load with" in text and "Print the JSON report" in text


# ---- packaged:NAME, resolved by resolve_artifact ----------------------------------------------

def test_load_takes_a_packaged_artifact(smollm2_gguf):
    import edgekit
    from edgekit.artifact import resolve_artifact

    assert resolve_artifact("packaged:smollm2-gguf").model_file == smollm2_gguf
    with edgekit.load("packaged:smollm2-gguf", threads=1, context=64) as model:
        assert model.generate("The capital of France is", max_tokens=2).timings.decode_tokens >= 1


@pytest.mark.parametrize("spec", ["packaged:smollm2", "packaged:minilm"])
def test_a_packaged_source_is_not_an_artifact(spec):
    import edgekit
    from edgekit.errors import ConfigError

    with pytest.raises(ConfigError, match="model folder to export, not an artifact") as info:
        edgekit.load(spec)
    assert "packaged:smollm2-gguf" in str(info.value) and f"edgekit export onnx {spec}" in str(info.value)


def test_an_unknown_packaged_name_lists_the_names():
    import edgekit
    from edgekit.errors import UserError

    with pytest.raises(UserError, match="unknown packaged model 'nope'.*smollm2-gguf"):
        edgekit.load("packaged:nope")


def test_bench_takes_a_packaged_artifact(cli, smollm2_gguf):
    proc = cli("bench", "packaged:smollm2-gguf", "--runs", "1", "--warmup", "0", "--prompt-tokens", "4",
               "--gen-tokens", "2", "--threads", "1", "--context", "64", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)["results"][0]
    assert result["path"] == str(smollm2_gguf) and result["status"] == "ok"


def test_run_refuses_a_packaged_source_in_one_line(cli):
    proc = cli("run", "packaged:smollm2", "-p", "hi", env={"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": ""})
    assert proc.returncode == 2
    assert "packaged:smollm2 is a Hugging Face model folder to export" in error_line(proc)


# ---- one integer check ------------------------------------------------------------------------

@pytest.mark.parametrize("value,ok", [(1, True), (0, False), (True, False), (1.0, False), ("1", False), (None, False)])
def test_is_int(value, ok):
    from edgekit.errors import is_int

    assert is_int(value, 1) is ok


def test_check_int_names_the_parameter():
    from edgekit.errors import ConfigError, check_int

    assert check_int("runs", 3, 1) == 3
    with pytest.raises(ConfigError, match=r"^runs must be an integer >= 1, got 0$") as info:
        check_int("runs", 0, 1)
    assert info.value.params == ("runs",)
    with pytest.raises(ConfigError, match=r"port must be an integer in 0\.\.65535, got True"):
        check_int("port", True, 0, 65535)
