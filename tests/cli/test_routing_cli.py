"""The options ``edgekit run`` and ``edgekit serve`` share (edgekit/cli/routing.py): declared once, so the
names, defaults, help and validation are the same in both commands."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgekit.cli.routing import RoutingOptions, routing_options
from tests.conftest import error_line

SHARED = ["--threads", "--context", "--remote", "--model", "--api-key-env", "--config", "--local-only", "--threshold",
          "--first-k", "--ttft-budget", "--total-budget", "--decision-log"]


def _command(name: str):
    from edgekit.cli import _register, app

    _register()
    return typer.main.get_command(app).commands[name]


def _declaration(param) -> dict:
    """Everything the parser and --help use: name, flags, type and bounds, default, help, flag or not ..."""
    declared = {k: v for k, v in vars(param).items() if k not in ("type_descriptor", "_runtime_param")}
    return declared | {"annotation": param.type_descriptor.annotation}


def test_run_and_serve_declare_the_shared_options_identically():
    run, serve = _command("run"), _command("serve")
    for cmd in (run, serve):
        flags = [o for p in cmd.params for o in p.opts if o in SHARED]
        assert flags == SHARED, cmd.name  # all of them, in one block, in this order
    names = [p.name for p in run.params if set(p.opts) & set(SHARED)]
    assert names == [f.name for f in fields(RoutingOptions)]  # every option lands in its field
    by_flag = {cmd.name: {o: p for p in cmd.params for o in p.opts} for cmd in (run, serve)}
    for flag in SHARED:
        assert _declaration(by_flag["run"][flag]) == _declaration(by_flag["serve"][flag]), flag
    own = {"run": {"--prompt", "--chat", "--json", "--stop"}, "serve": {"--port", "--replicas", "--api-key", "--alias"}}
    for name, flags in own.items():  # each command keeps its own options
        other = "serve" if name == "run" else "run"
        assert flags <= set(by_flag[name]) and not flags & set(by_flag[other])


def test_the_help_states_the_defaults_the_router_uses():
    from edgekit.router.policy import DEFAULT_THRESHOLD, Policy

    opts = {o: p for p in _command("serve").params for o in p.opts}
    assert f"else {DEFAULT_THRESHOLD:g})" in opts["--threshold"].help
    budget = opts["--total-budget"].help
    assert f"at least {Policy().remote_min_s:g} s" in budget and "remote_min_s" in budget
    assert "--first-k" in budget and "must be done by then too" in budget  # the draft, and the remote's deadline


def test_the_options_reach_the_command_as_one_value():
    app = typer.Typer()
    seen = {}

    @app.command()
    @routing_options
    def probe(name: str = typer.Argument(...), routing: RoutingOptions = RoutingOptions(),
              loud: bool = typer.Option(False, "--loud")):
        seen.update(name=name, routing=routing, loud=loud)

    runner = CliRunner()
    res = runner.invoke(app, ["x", "--threads", "2", "--total-budget", "1.5", "--local-only",
                              "--decision-log", "d.jsonl", "--model", "m", "--loud"])
    assert res.exit_code == 0, res.output
    assert seen == {"name": "x", "loud": True, "routing": RoutingOptions(
        threads=2, total_budget=1.5, local_only=True, decision_log=Path("d.jsonl"), model_name="m")}
    assert runner.invoke(app, ["y"]).exit_code == 0 and seen["routing"] == RoutingOptions()
    for bad in (["--threads", "0"], ["--threshold", "1.5"], ["--context", "1"]):
        assert runner.invoke(app, ["x", *bad]).exit_code == 2, bad


def test_a_command_must_say_where_the_options_go():
    with pytest.raises(TypeError, match="routing: RoutingOptions"):
        routing_options(lambda name: None)

    def clash(routing: RoutingOptions = RoutingOptions(), threads: int = 1):
        pass

    with pytest.raises(TypeError, match="'threads' is one of the shared"):
        routing_options(clash)


@pytest.fixture
def env():
    """No config from the developer's environment leaks in (the repository root has no edgekit.toml)."""
    return {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": "", "EDGEKIT_THRESHOLD": ""}


@pytest.mark.parametrize("args,words", [
    (["--local-only", "--remote", "http://127.0.0.1:1/v1"], "--local-only and --remote contradict each other"),
    (["--total-budget", "5", "--decision-log", "d.jsonl"], "--total-budget, --decision-log only apply when routing"),
])
@pytest.mark.parametrize("command", [["run", "-p", "hi"], ["serve", "--port", "0"]])
def test_both_commands_validate_the_shared_options_alike(cli, env, tmp_path, command, args, words):
    """Checked before any model loads: the artifact is never opened."""
    proc = cli(command[0], tmp_path / "never-opened.gguf", *command[1:], *args, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in error_line(proc) and "never-opened" not in proc.stderr
