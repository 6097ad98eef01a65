"""What a user expects from the CLI (issue 11, class 5): ``run -p`` goes through the model's chat
template like ``ollama run`` and ``llama-cli`` (``--raw`` sends plain text), and ``--json`` is a flag
that prints JSON on stdout on every command that reports (files go through ``-o`` or ``--report``)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import error_line

ENV = {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""}
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def tiny_model(cli_artifacts):
    import edgekit

    with edgekit.load(cli_artifacts("gguf"), threads=1) as model:
        yield model


def run_json(cli, artifact, *args: str) -> dict:
    proc = cli("run", artifact, *args, "-n", "6", "--threads", "1", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_run_prompt_goes_through_the_chat_template(cli, cli_artifacts, tiny_model):
    assert tiny_model.chat_template  # the tiny model's tokenizer has a ChatML template
    chat = tiny_model.chat([{"role": "user", "content": QUESTION}], max_tokens=6)
    raw = tiny_model.generate(QUESTION, max_tokens=6)
    templated = run_json(cli, cli_artifacts("gguf"), "-p", QUESTION)
    assert templated["text"] == chat.text
    assert templated["timings"]["prompt_tokens"] == chat.timings.prompt_tokens > raw.timings.prompt_tokens
    plain = run_json(cli, cli_artifacts("gguf"), "--raw", "-p", QUESTION)
    assert plain["text"] == raw.text and plain["timings"]["prompt_tokens"] == raw.timings.prompt_tokens
    # the old opt-in flag is accepted and changes nothing
    assert run_json(cli, cli_artifacts("gguf"), "--template", "-p", QUESTION)["text"] == chat.text


def test_run_streams_the_templated_answer(cli, cli_artifacts, tiny_model):
    proc = cli("run", cli_artifacts("gguf"), "-p", QUESTION, "-n", "6", "--threads", "1", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == tiny_model.chat([{"role": "user", "content": QUESTION}], max_tokens=6).text + "\n"
    system = run_json(cli, cli_artifacts("gguf"), "--system", "Answer briefly.", "-p", QUESTION)
    expected = tiny_model.chat([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}],
                               max_tokens=6)
    assert system["text"] == expected.text


def test_a_model_without_a_chat_template_gets_the_plain_prompt(cli, cli_artifacts):
    import edgekit

    artifact = cli_artifacts("gguf-no-template")
    with edgekit.load(artifact, threads=1) as model:
        assert not model.chat_template
        raw = model.generate(QUESTION, max_tokens=6)
    proc = cli("run", artifact, "-p", QUESTION, "-n", "6", "--threads", "1", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == raw.text
    assert "has no chat template: the prompt goes in as plain text" in proc.stderr
    quiet = cli("run", artifact, "--raw", "-p", QUESTION, "-n", "6", "--threads", "1", "--json", env=ENV)
    assert quiet.returncode == 0 and "chat template" not in quiet.stderr


@pytest.mark.parametrize("args,words", [
    (["--raw", "--system", "Be brief.", "-p", "hi"], "--raw sends plain text without the chat template, --system"),
    (["--raw", "--template", "-p", "hi"], "--template needs the template"),
    (["--raw", "--chat"], "--chat needs the template"),
])
def test_raw_contradictions_are_one_line(cli, cli_artifacts, args, words):
    proc = cli("run", cli_artifacts("gguf"), *args, env=ENV, input="")
    assert proc.returncode == 2 and proc.stdout == ""
    assert words in error_line(proc)


def test_run_help_documents_raw_and_the_deprecated_template(cli):
    proc = cli("run", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--raw" in text and "plain text" in text
    assert "--template" in text and "Deprecated, does nothing" in text


# ---- --json: one convention ---------------------------------------------------------------------

def _commands():
    import typer

    from edgekit.cli import _register, app

    _register()

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, path + [name])
        else:
            yield " ".join(path), cmd

    return list(walk(typer.main.get_command(app), []))


def test_json_is_a_flag_on_every_command_that_reports():
    commands = dict(_commands())
    reporting = {"bench", "predict", "run", "gate", "inspect", "embed", "calibrate", "export onnx", "export gguf",
                 "targets list", "targets show", "targets detect"}
    assert reporting <= set(commands), sorted(commands)
    for name, cmd in commands.items():
        opts = {o: p for p in cmd.params for o in getattr(p, "opts", [])}
        if name in reporting:
            assert "--json" in opts, f"{name} has no --json"
        if "--json" in opts:
            assert opts["--json"].is_flag, f"'{name} --json' takes a value: it must be a flag that prints JSON"
    bench = {o: p for p in commands["bench"].params for o in getattr(p, "opts", [])}
    assert {"-o", "--output", "--report"} <= set(bench)  # bench's files


def test_bench_json_prints_and_output_writes(cli, cli_artifacts, tmp_path):
    from edgekit.profiler.schema import BenchReport

    out = tmp_path / "bench.json"
    proc = cli("bench", cli_artifacts("gguf"), "--runs", "1", "--warmup", "0", "--prompt-tokens", "8",
               "--gen-tokens", "4", "--json", "-o", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = BenchReport.model_validate(json.loads(proc.stdout))  # stdout holds the JSON report and nothing else
    written = BenchReport.model_validate(json.loads(out.read_text()))
    assert printed == written and printed.results[0].decoder.decode_tokens == 3
    assert f"wrote {out}" in " ".join(proc.stderr.split())
