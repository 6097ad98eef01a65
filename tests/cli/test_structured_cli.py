"""``edgekit run --json-schema FILE | --regex RE | --grammar FILE`` on the packaged SmolLM2 GGUF (packaged:smollm2-gguf)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.conftest import error_line

ENV = {"EDGEKIT_CONFIG": "", "EDGEKIT_REMOTE_URL": "", "EDGEKIT_REMOTE_MODEL": ""}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}


def _run(cli, *args: str):
    return cli("run", "packaged:smollm2-gguf", "--threads", "1", *args, env=ENV)


def test_json_schema_file_gives_the_api_answer_and_its_parsed_value(cli, tmp_path, smollm2_gguf):
    import edgekit

    schema = tmp_path / "person.json"
    schema.write_text(json.dumps(PERSON))
    ask = "Extract the facts as JSON: Alice is 31."
    proc = _run(cli, "-p", ask, "--json-schema", str(schema), "-n", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    jsonschema.validate(out["parsed"], PERSON)
    assert json.loads(out["text"]) == out["parsed"] and out["finish_reason"] == "eos"
    with edgekit.load(smollm2_gguf, threads=1) as model:
        direct = model.chat([{"role": "user", "content": ask}], max_tokens=64,
                            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    assert out["text"] == direct.text
    wrapped = tmp_path / "format.json"  # OpenAI's response_format object is taken as it is
    wrapped.write_text(json.dumps({"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}))
    again = _run(cli, "-p", ask, "--json-schema", str(wrapped), "-n", "64", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["parsed"] == out["parsed"]


def test_regex_and_grammar_hold_the_streamed_answer(cli, tmp_path):
    date = _run(cli, "-p", "When did Apollo 11 land?", "--regex", r"\d{4}-\d{2}-\d{2}", "-n", "16")
    assert date.returncode == 0, date.stderr
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}\n", date.stdout)
    gbnf = tmp_path / "yes-no.gbnf"
    gbnf.write_text('root ::= "yes" | "no"\n')  # llama.cpp's GBNF is taken as well as Lark
    answer = _run(cli, "-p", "Is the sky blue?", "--grammar", str(gbnf), "-n", "8")
    assert answer.returncode == 0 and answer.stdout in ("yes\n", "no\n"), answer.stderr


@pytest.mark.parametrize("args, words", [
    (["--regex", "a+", "--grammar", "g.lark"], "--regex and --grammar both constrain the answer: pass one of them"),
    (["--json-schema", "."], "is a folder, not a file"),
    (["--json-schema", "missing.json"], "does not exist"),
    (["--json-schema", "bad.json"], "is not valid JSON"),
    (["--json-schema", "list.json"], "holds a JSON list, not a schema object"),
    (["--regex", "(("], "response_format regex cannot be compiled"),
    (["--grammar", "g.lark"], "unknown name"),
])
def test_bad_constraints_are_one_line_before_loading(cli, tmp_path, monkeypatch, args, words):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "g.lark").write_text("start: missing_rule\n")
    args = [str(tmp_path / a) if a.endswith((".json", ".lark")) or a == "." else a for a in args]
    proc = _run(cli, "-p", "hi", *args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert words in error_line(proc)
    assert "loading" not in proc.stderr  # refused before the model loads


def test_run_help_names_the_constraint_options(cli):
    proc = cli("run", "--help", env={**ENV, "COLUMNS": "200"})
    for option in ("--json-schema", "--regex", "--grammar"):
        assert option in proc.stdout
    assert "GBNF" in proc.stdout


def test_tools_file_prints_the_call_and_chat_takes_its_result(cli, tmp_path):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city", "parameters": {
            "type": "object", "additionalProperties": False, "required": ["city"],
            "properties": {"city": {"type": "string"}}}}}]))
    call = _run(cli, "-p", "What is the weather in Paris?", "--tools", str(tools), "--tool-choice", "required", "-n", "48")
    assert call.returncode == 0, call.stderr
    m = re.fullmatch(r"tool call: get_weather\((\{.*\})\)\n\n", call.stdout)
    assert m and isinstance(json.loads(m.group(1))["city"], str)
    as_json = _run(cli, "-p", "What is the weather in Paris?", "--tools", str(tools), "--tool-choice", "get_weather",
                   "-n", "48", "--json")
    out = json.loads(as_json.stdout)
    assert out["finish_reason"] == "tool_calls" and out["tool_calls"][0]["function"]["name"] == "get_weather"
    chat = cli("run", "packaged:smollm2-gguf", "--threads", "1", "--chat", "--tools", str(tools), "--tool-choice",
               "required", "-n", "48", "--json", env=ENV, input='Weather in Oslo?\n{"celsius": -4}\n')
    assert chat.returncode == 0, chat.stderr
    dec, text, answers, i = json.JSONDecoder(), chat.stdout, [], 0
    while text[i:].strip():
        value, i = dec.raw_decode(text, len(text) - len(text[i:].lstrip()))
        answers.append(value)
    assert len(answers) == 2 and all(a["finish_reason"] == "tool_calls" for a in answers)  # the result went back in
    raw = _run(cli, "--raw", "-p", "hi", "--tools", str(tools))
    assert raw.returncode == 2 and "--tools needs the template" in error_line(raw)
