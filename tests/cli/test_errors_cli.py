"""One clear line instead of a traceback, checked before the work (issue 11, class 4).

Every command here runs in a real subprocess with stderr captured (a pipe, not a
terminal): a failing command prints exactly one line there, exits 2, and fails
before any model runs (no progress line of a step, nothing written).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil

import pytest

from edgekit.errors import ConfigError
from tests.conftest import error_line

SYS = "/sys"  # not writable even for root: /sys rejects new entries


def one_line_exit_2(proc) -> str:
    """The command failed as a user error with exactly one line on stderr and nothing on stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    return error_line(proc)


# ---- predict: bad numbers are one line naming the flag, before any calibration run ----------------

@pytest.mark.parametrize("value,words", [
    ("inf", "more than any model has"),
    ("-inf", "too small"),
    ("nan", "not a parameter count"),
    ("1e400", "more than any model has"),
    ("1e30", "more than any model has"),
    ("1" + "0" * 400, "more than any model has"),
    ("-5", "too small"),
    ("0", "too small"),
    ("infB", "more than any model has"),
    ("3.2X", "not a parameter count"),
])
def test_predict_bad_params_is_one_line(cli, value, words):
    line = one_line_exit_2(cli("predict", "--target", "raspberry-pi-5", f"--params={value}", "--quant", "q4_k_m"))
    assert line.startswith("edgekit: error: --params ") and words in line


@pytest.mark.parametrize("flag,value", [
    ("--layers", "99999999999999999999999"),
    ("--kv-heads", "1000000"),
    ("--head-dim", "100000000"),
    ("--context", "99999999999999999999"),
    ("--prompt-tokens", "99999999999999999999999999"),
    ("--gen-tokens", "99999999999999"),
])
def test_predict_absurd_shape_is_one_line(cli, flag, value):
    options = {"--layers": "28", "--kv-heads": "8", "--head-dim": "128", flag: value}
    extra = [a for k, v in options.items() for a in (k, v)]
    line = one_line_exit_2(cli("predict", "--target", "raspberry-pi-5", "--params", "3B", "--quant", "q4_k_m", *extra))
    assert f"{flag} " in line and "beyond any model" in line


def test_shape_and_predict_validate_at_the_root():
    from edgekit.profiler.api import predict_full
    from edgekit.profiler.shape import parse_params, shape_from_params

    for bad in (math.inf, -math.inf, math.nan, 1e400, 10**400, "1e400", "nanB"):
        with pytest.raises(ConfigError) as info:
            parse_params(bad)
        assert info.value.params == ("params",)
    assert parse_params(10**14) == 10**14 and parse_params("100T") == 10**14
    for kwargs, name in ((dict(layers=10**20), "layers"), (dict(kv_heads=0), "kv_heads"), (dict(head_dim=2.5), "head_dim"),
                         (dict(context=10**15), "context"), (dict(heads=-1), "heads"),
                         (dict(untied_embedding_params=2 * 10**9), "untied_embedding_params")):
        with pytest.raises(ConfigError) as info:
            shape_from_params(10**9, "q4_0", **kwargs)
        assert info.value.params == (name,)
    with pytest.raises(ConfigError, match="^params must be an integer"):
        shape_from_params(math.inf, "q4_0")
    with pytest.raises(ConfigError, match="unknown quantization"):
        shape_from_params(10**9, None)
    for kwargs, name in ((dict(prompt_tokens=10**12), "prompt_tokens"), (dict(gen_tokens=None), "gen_tokens"),
                         (dict(context=1), "context")):
        with pytest.raises(ConfigError) as info:  # before any calibration: none is given and none is cached
            predict_full("raspberry-pi-5", params="3B", quant="q4_k_m", **kwargs)
        assert info.value.params == (name,)


# ---- gate: a source that is not the artifact's model is exit 2, before the reference model runs --------

@pytest.mark.parametrize("artifact,source,words", [
    ("onnx-encoder", "tiny_llama", ["architecture bert vs llama", "vocabulary size"]),
    ("onnx-decoder", "tiny_bert", ["needs a text-generation source, not feature-extraction", "architecture llama vs bert"]),
    ("gguf", "tiny_bert", ["needs a text-generation source", "vocabulary size"]),
    ("onnx-classifier", "tiny_bert", ["needs a text-classification source, not feature-extraction (BertModel)"]),
    ("onnx-classifier", "tiny_llama", ["needs a text-classification source, not text-generation"]),
])
def test_gate_with_a_mismatched_source(cli, cli_artifacts, request, artifact, source, words):
    src = request.getfixturevalue(source)
    line = one_line_exit_2(cli("gate", cli_artifacts(artifact), "--source", src))  # no "gate: reference" line
    assert f"the source {src.name} is not the model {artifact} was exported from" in line
    assert line.endswith("pass that model as --source")
    for w in words:
        assert w in line, line


def test_gate_source_check_in_the_python_api(cli_artifacts, tiny_llama, tiny_qwen2, tiny_bert, tmp_path):
    from edgekit.exporters import gate_artifact
    from edgekit.exporters.gguf import gate_gguf
    from edgekit.exporters.onnx import gate_onnx

    with pytest.raises(ConfigError, match="architecture bert vs llama") as info:
        gate_artifact(cli_artifacts("onnx-encoder"), tiny_llama)
    assert info.value.params == ("source",)
    with pytest.raises(ConfigError, match="architecture llama vs qwen2"):  # same size and vocabulary, other model
        gate_gguf(cli_artifacts("gguf"), tiny_qwen2)
    with pytest.raises(ConfigError, match="needs a text-generation source"):
        gate_onnx(cli_artifacts("onnx-decoder"), tiny_bert)
    # one layer more: same architecture, vocabulary and width, still not the model the artifact came from
    deeper = tmp_path / "deeper"
    shutil.copytree(tiny_llama, deeper)
    config = (deeper / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')
    (deeper / "config.json").write_text(config)
    with pytest.raises(ConfigError, match="layers 2 vs 3"):
        gate_artifact(cli_artifacts("gguf"), deeper)


def test_gate_accepts_the_classifier_checkpoint_an_encoder_was_exported_from(cli, tiny_bert_classifier, tmp_path):
    from edgekit.exporters.onnx import export_onnx

    # a classifier checkpoint exported as feature-extraction: its source is a classifier, the artifact an encoder
    art = export_onnx(tiny_bert_classifier, tmp_path / "encoder-of-classifier", task="feature-extraction")
    proc = cli("gate", art.path, "--source", tiny_bert_classifier, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "passed"


# ---- every output path is checked writable before the work --------------------------------------

def test_check_output_file(tmp_path):
    from edgekit.fileio import check_output_file

    assert check_output_file(tmp_path / "new.json", "out") == tmp_path / "new.json"
    assert not (tmp_path / "new.json").exists() and not list(tmp_path.iterdir())  # creates nothing
    for path, words in ((tmp_path, "it is a folder"), (tmp_path / "missing" / "x.json", "does not exist"),
                        (f"{SYS}/x.json", "is not writable")):
        with pytest.raises(ConfigError, match=words) as info:
            check_output_file(path, "out")
        assert info.value.params == ("out",) and "choose another out=" in str(info.value)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_output_file(blocker / "x.json", "out")
    assert check_output_file(tmp_path / "logs" / "d.jsonl", "decision_log", append=True, make_folders=True)
    assert not (tmp_path / "logs").exists()
    log = tmp_path / "d.jsonl"
    log.write_text("old\n")
    check_output_file(log, "decision_log", append=True)
    assert log.read_text() == "old\n"
    if os.geteuid() != 0:  # root writes anywhere but /sys
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            with pytest.raises(ConfigError, match="not writable"):
                check_output_file(locked / "x.json", "out")
        finally:
            locked.chmod(0o755)


def test_bench_output_paths_are_checked_before_any_run(cli, cli_artifacts, tmp_path):
    gguf = cli_artifacts("gguf")
    for args, words in (
        (["-o", f"{SYS}/b.json"], "cannot write /sys/b.json: /sys is not writable"),
        (["-o", tmp_path / "missing" / "b.json"], "does not exist; choose another -o/--output"),
        (["-o", tmp_path], "it is a folder; choose another -o/--output"),
        (["--report", f"{SYS}/report"], "choose another --report"),
        (["--json", tmp_path / "b.json"], "--json prints the report on stdout; write it to a file with -o"),
    ):
        line = one_line_exit_2(cli("bench", gguf, "--runs", "1", "--warmup", "0", *args))
        assert words in line, line
    assert not list(tmp_path.iterdir())


def test_other_commands_check_their_output_paths_first(cli, cli_artifacts, tiny_llama, tmp_path):
    gguf = cli_artifacts("gguf")
    env = {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""}
    cases = [
        (["targets", "detect", "--save", f"{SYS}/host.toml"], "choose another --save"),
        (["targets", "detect", "--save", tmp_path / "missing" / "host.toml"], "does not exist; choose another --save"),
        (["calibrate", gguf, "--limit", "2", "--config", f"{SYS}/edgekit.toml"], "choose another --config"),
        (["calibrate", gguf, "--limit", "2", "--config", tmp_path], "it is a folder; choose another --config"),
        (["run", gguf, "-p", "hi", "--remote", "http://127.0.0.1:9/v1", "--model", "m", "--decision-log",
          f"{SYS}/decisions.jsonl"], "choose another --decision-log"),
        (["run", gguf, "-p", "hi", "--remote", "http://127.0.0.1:9/v1", "--model", "m", "--decision-log", tmp_path],
         "it is a folder; choose another --decision-log"),
        (["serve", gguf, "--remote", "http://127.0.0.1:9/v1", "--model", "m", "--decision-log", f"{SYS}/d.jsonl"],
         "choose another --decision-log"),
        (["export", "gguf", tiny_llama, "-o", f"{SYS}/OUT"], "not writable"),
        (["export", "onnx", tiny_llama, "-o", f"{SYS}/OUT"], "not writable"),
    ]
    for args, words in cases:
        line = one_line_exit_2(cli(*args, env=env))
        assert words in line, (args, line)
    assert not list(tmp_path.iterdir())


def test_decision_log_in_the_config_is_checked_before_loading(cli, cli_artifacts, tmp_path):
    config = tmp_path / "edgekit.toml"
    config.write_text('[remote]\nurl = "http://127.0.0.1:9/v1"\nmodel = "m"\n[decision_log]\npath = "/sys/d.jsonl"\n')
    line = one_line_exit_2(cli("run", cli_artifacts("gguf"), "-p", "hi", "--config", config,
                               env={"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": ""}))
    assert "cannot write /sys/d.jsonl" in line


def test_report_folder_that_exists_is_probed(tmp_path):
    from edgekit.profiler.report import check_report_dir

    assert check_report_dir(tmp_path) == tmp_path  # an existing, writable folder
    assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="not writable") as info:
        check_report_dir("/sys")  # exists, is a folder, takes no files
    assert info.value.params == ("folder",)


# ---- progress: bars only on a terminal, so an error is the first line a script reads --------------

def test_progress_draws_only_on_a_terminal():
    from rich.console import Console

    from edgekit.progress import RichProgress

    pipe = io.StringIO()
    progress = RichProgress(Console(file=pipe, force_terminal=False, width=100))
    with progress.step("convert: 3 tensors", total=3) as step:
        step.advance(3)
    with pytest.raises(RuntimeError):
        with progress.step("gate: reference model"):
            raise RuntimeError("boom")
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert: 3 tensors: done (3/3, ")  # the failed step: nothing
    assert not any(ch in pipe.getvalue() for ch in "━⠋⠙⠹")
    tty = io.StringIO()
    with RichProgress(Console(file=tty, force_terminal=True, width=100)).step("convert: 3 tensors", total=3) as step:
        step.advance(3)
    assert "━" in tty.getvalue() and "3/3" in tty.getvalue()  # a terminal gets the bar


def test_a_failure_during_loading_is_the_only_line(cli, cli_artifacts, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(cli_artifacts("gguf"), broken)
    model = next(broken.glob("*.gguf"))
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    line = one_line_exit_2(cli("run", broken, "-p", "hi", env={"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": ""}))
    assert "sha256" in line or "changed" in line or "does not match" in line, line


def test_finished_steps_are_plain_lines_on_a_pipe(cli, cli_artifacts, tiny_llama):
    proc = cli("gate", cli_artifacts("gguf"), "--source", tiny_llama)
    assert proc.returncode == 0, proc.stderr
    assert "gate: q8_0 gguf artifact: done (20/20, " in proc.stderr
    assert not any(ch in proc.stderr for ch in "━⠋⠙⠹")
