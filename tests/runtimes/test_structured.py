"""Structured output on both local backends: JSON schema, json_object, regex, Lark, choice and a pydantic class,
through the Python API, with llguidance's masks over the real SmolLM2 (a GGUF f16 and an ONNX fp32 export of the
same source)."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

import edgekit
from edgekit.errors import ConfigError
from edgekit.runtimes.constrain import response_format
from edgekit.runtimes.sampling import distribution

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150}}}
ORDER = {"type": "object", "additionalProperties": False, "required": ["items", "express"],
         "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
             "type": "object", "additionalProperties": False, "required": ["product", "quantity"],
             "properties": {"product": {"type": "string", "enum": ["apple", "pear", "plum"]},
                            "quantity": {"type": "integer", "minimum": 1, "maximum": 9}}}},
             "express": {"type": "boolean"}}}
WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "celsius", "sky"],
           "properties": {"city": {"type": "string", "maxLength": 30},
                          "celsius": {"type": "number", "minimum": -50, "maximum": 60},
                          "sky": {"type": "string", "enum": ["sunny", "cloudy", "rain", "snow"]}}}
CASES = [  # (schema, sentence to extract from)
    (PERSON, "Alice is 31 years old and lives in Paris."),
    (PERSON, "My grandfather Tomas turned 87 last week."),
    (ORDER, "Send me three apples and two pears, as fast as possible."),
    (WEATHER, "In Oslo it is snowing at minus four degrees."),
    (WEATHER, "Madrid: clear sky, 29 degrees."),
]


def _fmt(schema: dict, name: str = "answer") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": f"Extract the facts as JSON. {text}"}]


@pytest.fixture(scope="module")
def smol_f16(smollm2_hf, tmp_path_factory):
    from edgekit.exporters.gguf import export_gguf

    art = export_gguf(smollm2_hf, tmp_path_factory.mktemp("structured") / "f16", quant="f16")
    model = edgekit.load(art.path, threads=2, context=1024)
    yield model
    model.close()


def test_schemas_on_both_backends_validate_and_agree(smol_f16, smol_onnx):
    for schema, text in CASES:
        fmt = _fmt(schema)
        a = smol_f16.chat(_ask(text), response_format=fmt, max_tokens=96)
        b = smol_onnx.chat(_ask(text), response_format=fmt, max_tokens=96)
        for r in (a, b):
            assert r.constrained and r.finish_reason == "eos", (text, r.text)
            jsonschema.validate(json.loads(r.text), schema)
            assert r.parsed == json.loads(r.text)
        assert a.text == b.text, (text, a.text, b.text)  # one constraint, one greedy answer, whichever backend


@pytest.mark.parametrize("which", ["smol_gguf", "smol_onnx"])
def test_each_format_kind(which, request):
    model = request.getfixturevalue(which)
    r = model.chat(_ask("Bob is 40."), response_format={"type": "json_object"}, max_tokens=64)
    if r.finish_reason == "eos":
        assert isinstance(r.parsed, dict) and json.loads(r.text) == r.parsed
    else:  # a json_object may run on past max_tokens: then it is not whole, and not parsed
        assert r.finish_reason == "length" and r.parsed is None and r.text.lstrip().startswith("{")
    date = model.chat([{"role": "user", "content": "When did Apollo 11 land on the moon? Give the date."}],
                      response_format={"type": "regex", "pattern": r"\d{4}-\d{2}-\d{2}"}, max_tokens=16)
    assert date.finish_reason == "eos" and len(date.text) == 10 and date.parsed == date.text
    assert date.text[4] == "-" and date.text[7] == "-" and date.text.replace("-", "").isdigit()
    phone = model.chat([{"role": "user", "content": "Write a phone number."}],
                       response_format={"type": "regex", "pattern": r"\+1 \d{3}-\d{3}-\d{4}"}, max_tokens=24)
    assert phone.finish_reason == "eos" and len(phone.text) == 15 and phone.text.startswith("+1 ")
    yes_no = model.chat([{"role": "user", "content": "Is the sky blue?"}],
                        response_format={"type": "choice", "choices": ["yes", "no", "maybe"]}, max_tokens=8)
    assert yes_no.text in ("yes", "no", "maybe") and yes_no.parsed == yes_no.text
    lark = 'start: "The answer is " NUM "."\nNUM: /[0-9]+/'
    math = model.chat([{"role": "user", "content": "What is 2 + 3?"}], response_format={"type": "lark", "grammar": lark},
                      max_tokens=16)
    assert math.finish_reason == "eos" and math.text.startswith("The answer is ") and math.text.endswith(".")
    assert math.text[len("The answer is "):-1].isdigit()


def test_a_pydantic_class_gives_an_instance(smol_gguf):
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    class Person(BaseModel):  # no extra="forbid": closed as OpenAI's client closes it, or the model invents fields
        name: str
        age: int
        home: City

    r = smol_gguf.chat(_ask("Alice is 31 years old and lives in Paris, France."), response_format=Person,
                       max_tokens=96)
    assert r.finish_reason == "eos" and isinstance(r.parsed, Person) and r.parsed.age >= 0 and r.parsed.name
    assert Person.model_validate_json(r.text) == r.parsed and set(json.loads(r.text)) == {"name", "age", "home"}
    assert set(json.loads(r.text)["home"]) == {"name", "country"}


def test_sampling_stop_and_max_tokens_keep_their_meaning(smol_gguf):
    fmt = _fmt(PERSON)
    seen = set()
    for seed in range(4):
        r = smol_gguf.chat(_ask("Alice is 31 years old."), response_format=fmt, max_tokens=64, temperature=1.0,
                           seed=seed)
        assert r.finish_reason == "eos"
        jsonschema.validate(r.parsed, PERSON)
        seen.add(r.text)
        again = smol_gguf.chat(_ask("Alice is 31 years old."), response_format=fmt, max_tokens=64, temperature=1.0,
                               seed=seed)
        assert again.text == r.text  # seeded: reproducible under the mask too
    assert len(seen) > 1  # sampling still samples (among the allowed tokens)
    short = smol_gguf.chat(_ask("Alice is 31 years old."), response_format=fmt, max_tokens=4)
    assert short.finish_reason == "length" and short.parsed is None and len(short.token_ids) == 4
    cut = smol_gguf.chat(_ask("Alice is 31 years old."), response_format=fmt, max_tokens=64, stop=["Alice"])
    assert cut.finish_reason == "stop" and "Alice" not in cut.text and cut.parsed is None
    streamed = list(smol_gguf.stream_chat(_ask("Alice is 31 years old."), response_format=fmt, max_tokens=64))
    assert all(ev.constrained for ev in streamed) and streamed[-1].parsed == json.loads("".join(e.text for e in streamed))
    assert all(ev.parsed is None for ev in streamed[:-1])


def test_confidence_is_renormalised_over_the_allowed_tokens(smol_gguf):
    """Each constrained token's probability is its softmax share among the tokens the grammar allowed: at least
    its share of the whole vocabulary, and exactly 1 where the grammar forces one token."""
    msgs = [{"role": "user", "content": "Is the sky blue?"}]
    r = smol_gguf.chat(msgs, response_format={"type": "choice", "choices": ["yes", "no"]}, max_tokens=8)
    free = smol_gguf.chat(msgs, max_tokens=1)
    ids = smol_gguf.tokenize(smol_gguf.render_chat(msgs), add_special=False)
    with smol_gguf._lock:
        smol_gguf._reset()
        logits = np.array(smol_gguf.forward(ids))
    e, z, _ = distribution(logits)
    whole = float(e[r.token_ids[0]]) / z
    assert r.constrained and not free.constrained
    assert r.probs[0] >= whole - 1e-6
    assert r.probs[0] > whole or whole > 0.999  # some other token had mass, unless the model was already sure


def test_bad_formats_are_config_errors_that_name_the_problem(smol_gguf):
    msgs = _ask("Bob is 40.")
    cases = [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
            "a": {"type": "strin"}}}}}, "strin"),
        ({"type": "regex", "pattern": "(("}, "unclosed group"),
        ({"type": "lark", "grammar": "start: missing_rule"}, "missing_rule"),
        ({"type": "choice", "choices": []}, "non-empty list"),
        ({"type": "xml"}, "is not a format edgekit knows"),
        ({"type": "json_schema"}, "needs 'json_schema'"),
        ("a string", "is not a format edgekit knows"),
    ]
    for spec, words in cases:
        with pytest.raises(ConfigError) as exc:
            smol_gguf.chat(msgs, response_format=spec)
        assert words in str(exc.value) and "\n" not in str(exc.value), (spec, str(exc.value))
        assert exc.value.params == ("response_format",)


def test_a_format_compiles_once():
    spec = _fmt(ORDER, "order")
    first = response_format(spec)
    assert response_format(json.loads(json.dumps(spec))) is first  # an equal spec is the same compiled format
    assert response_format({"type": "text"}) is None and response_format(None) is None
    assert first.openai == spec and first.schema == ORDER
    assert response_format({"type": "regex", "pattern": "a+"}).openai is None  # OpenAI's API has no regex format


def test_the_compiled_format_cache_is_bounded():
    from edgekit.runtimes import constrain

    first = response_format({"type": "regex", "pattern": "bounded-0"})
    for i in range(1, constrain._CACHE_SIZE + 1):  # as many new formats as the cache holds: the first is evicted
        response_format({"type": "regex", "pattern": f"bounded-{i}"})
    assert len(constrain._CACHE) == constrain._CACHE_SIZE
    again = response_format({"type": "regex", "pattern": "bounded-0"})
    assert again is not first and again.grammar == first.grammar  # compiled again, to the same grammar
    recent = response_format({"type": "regex", "pattern": f"bounded-{constrain._CACHE_SIZE}"})
    assert response_format({"type": "regex", "pattern": f"bounded-{constrain._CACHE_SIZE}"}) is recent
