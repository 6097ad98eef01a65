"""``edgekit run`` and ``edgekit calibrate`` in a real subprocess."""

from __future__ import annotations

import json
from edgekit.tomlio import tomllib

import pytest

from tests.conftest import error_line

pytestmark = pytest.mark.slow

UNSURE = "Which animal is known as the king of the jungle?"
CONFIDENT = "What is the chemical symbol for silver?"


def json_objects(text: str) -> list:
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
    return out


@pytest.fixture
def env(tmp_path):
    """No config from the developer's environment leaks in; the working folder has no edgekit.toml."""
    return {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""}


def test_run_streams_then_reports_speed_and_confidence(cli, smollm2_gguf, local_gguf, env):
    proc = cli("run", smollm2_gguf, "--raw", "-p", "The capital of France is", "-n", "8", "--threads", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == local_gguf.generate("The capital of France is", max_tokens=8).text + "\n"
    assert "tok/s" in proc.stderr and "prefill" in proc.stderr and "decode" in proc.stderr
    assert "confidence (first 8)" in proc.stderr and "decision:" not in proc.stderr


def test_run_json(cli, smollm2_gguf, local_gguf, env):
    proc = cli("run", smollm2_gguf, "--raw", "-p", "The capital of France is", "-n", "6", "--threads", "1", "--json",
               env=env)
    assert proc.returncode == 0, proc.stderr
    (data,) = json_objects(proc.stdout)
    direct = local_gguf.generate("The capital of France is", max_tokens=6)
    assert data["text"] == direct.text and data["finish_reason"] == direct.finish_reason
    assert data["timings"]["decode_tokens"] == direct.timings.decode_tokens and data["timings"]["decode_tps"] > 0
    assert data["confidence"]["tokens"] == len(direct.token_ids) and data["decision"] is None


def test_chat_keeps_the_history_until_exit(cli, smollm2_gguf, env):
    stdin = f"{CONFIDENT}\nAnd the symbol for gold?\n/exit\nThis line is never read.\n"
    proc = cli("run", smollm2_gguf, "--chat", "--system", "Answer briefly.", "-n", "12", "--threads", "1", "--json",
               env=env, input=stdin)
    assert proc.returncode == 0, proc.stderr
    turns = json_objects(proc.stdout)
    assert len(turns) == 2
    first, second = (t["timings"] for t in turns)
    # the second prompt holds the system message, the first exchange and the new question
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["decode_tokens"] + 5


def test_run_through_the_router_prints_the_decision(cli, smollm2_gguf, llama_server, remote, env):
    args = ["run", smollm2_gguf, "-p", UNSURE, "-n", "12", "--threads", "1",
            "--remote", llama_server.url, "--model", llama_server.model, "--api-key-env", llama_server.key_env]
    proc = cli(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    decision = [line for line in proc.stderr.splitlines() if line.startswith("decision:")]
    assert len(decision) == 1 and decision[0].startswith("decision: remote [low_confidence:")
    assert "confidence over 8 tokens" in decision[0] and "total" in decision[0]
    assert proc.stdout.strip() == remote.chat([{"role": "user", "content": UNSURE}], max_tokens=12).text.strip()
    assert llama_server.key not in proc.stdout + proc.stderr


def test_a_configured_remote_and_decision_log(cli, smollm2_gguf, llama_server, tmp_path, env):
    config = tmp_path / "edgekit.toml"
    config.write_text(
        f'[remote]\nurl = "{llama_server.url}"\nmodel = "{llama_server.model}"\napi_key_env = "{llama_server.key_env}"\n'
        '[decision_log]\npath = "decisions.jsonl"\n'
    )
    proc = cli("run", smollm2_gguf, "-p", CONFIDENT, "-n", "8", "--threads", "1", "--config", config,
               "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    (data,) = json_objects(proc.stdout)
    assert data["decision"]["tier"] == "local" and data["decision"]["trigger"] is None
    (line,) = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert json.loads(line)["tier"] == "local" and "silver" not in line
    local = cli("run", smollm2_gguf, "-p", "Hi", "-n", "2", "--threads", "1", "--config", config, "--local-only", env=env)
    assert local.returncode == 0 and "decision:" not in local.stderr


def test_run_an_onnx_artifact(cli, onnx_artifact, env):
    proc = cli("run", onnx_artifact("smollm2-int8").path, "-p", "The capital of France is", "-n", "6", "--threads", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "tok/s" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["run", "no/such/artifact", "-p", "hi"], "does not exist"),
    (["run", "{gguf}", "-p", "word " * 400, "--context", "256", "--threads", "1"], "context is 256 tokens"),
    (["run", "{gguf}", "-p", "hi", "--temperature", "-1"], "--temperature"),
    (["run", "{gguf}", "-p", "hi", "--top-p", "0"], "top_p must be in (0, 1]"),
    (["run", "{gguf}"], "either -p PROMPT or --chat"),
    (["run", "{gguf}", "-p", "hi", "--remote", "ftp://x", "--model", "m"], "must look like http://host:port/v1"),
    (["run", "{gguf}", "-p", "hi", "--model", "m"], "pass --remote URL"),
    (["run", "{gguf}", "-p", "hi", "--remote", "http://127.0.0.1:1/v1"], "no model"),
])
def test_bad_input_is_one_line_and_exit_2(cli, smollm2_gguf, env, args, message):
    proc = cli(*[a.replace("{gguf}", str(smollm2_gguf)) for a in args], env=env)
    assert proc.returncode == 2, proc.stderr
    assert message in error_line(proc)
    assert proc.stdout == ""


def test_calibrate_prints_the_table_and_writes_the_threshold(cli, smollm2_gguf, tmp_path, env):
    config = tmp_path / "edgekit.toml"
    proc = cli("calibrate", smollm2_gguf, "--limit", "8", "--min-local", "1", "--threads", "1", "--config", config, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "local share" in proc.stdout and "local accuracy" in proc.stdout and "AUROC" in proc.stdout
    assert "chosen threshold" in proc.stdout and "wrote" in proc.stdout
    policy = tomllib.loads(config.read_text())["policy"]
    assert (policy["first_k"], policy["quantile"]) == (8, 0.1) and 0 <= policy["threshold"] < 1
    assert f"chosen threshold {policy['threshold']:.2f}" in proc.stdout


def test_calibrate_with_bad_data_writes_nothing(cli, smollm2_gguf, tmp_path, env):
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "What?"}\n')
    config = tmp_path / "edgekit.toml"
    proc = cli("calibrate", smollm2_gguf, "--data", data, "--config", config, env=env)
    assert proc.returncode == 2 and "q.jsonl:1 needs" in error_line(proc)
    assert not config.exists()
