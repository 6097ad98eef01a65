"""response_format through edgekit serve with the official openai client, and through the router to a real remote
(llama-cpp-python's server, which applies the same JSON schema with its own grammar)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from edgekit.router import Policy, Router
from tests.serve.conftest import CLIENT_KEY, client, metrics_of, total

SCHEMAS = {
    "person": {"type": "object", "additionalProperties": False, "required": ["name", "age"],
               "properties": {"name": {"type": "string", "maxLength": 40},
                              "age": {"type": "integer", "minimum": 0, "maximum": 130}}},
    "city": {"type": "object", "additionalProperties": False, "required": ["city", "country", "population"],
             "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40},
                            "population": {"type": "integer", "minimum": 0, "maximum": 40000000}}},
    "order": {"type": "object", "additionalProperties": False, "required": ["items"],
              "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
                  "type": "object", "additionalProperties": False, "required": ["product", "quantity"],
                  "properties": {"product": {"type": "string", "enum": ["apple", "pear", "bread", "milk"]},
                                 "quantity": {"type": "integer", "minimum": 1, "maximum": 12}}}}}},
    "mood": {"type": "object", "additionalProperties": False, "required": ["mood", "score"],
             "properties": {"mood": {"type": "string", "enum": ["happy", "sad", "angry", "neutral"]},
                            "score": {"type": "number", "minimum": 0, "maximum": 1}}},
    "event": {"type": "object", "additionalProperties": False, "required": ["title", "day", "attendees"],
              "properties": {"title": {"type": "string", "maxLength": 40},
                             "day": {"type": "string", "enum": ["monday", "tuesday", "wednesday", "thursday",
                                                                "friday", "saturday", "sunday"]},
                             "attendees": {"type": "array", "maxItems": 4,
                                           "items": {"type": "string", "maxLength": 20}}}},
}
SENTENCES = {
    "person": ["Alice is 31.", "Bob turned 45 yesterday.", "My aunt Carla is 67 years old.", "Dan, aged 19, runs.",
               "Eve celebrated her 50th birthday.", "Frank is a 23 year old student.", "Grace is nine.",
               "Henry, 88, plays chess.", "Ivy is 34 and a nurse.", "Jack will be 40 next year."],
    "city": ["Paris is the capital of France with about 2 million people.", "Tokyo, Japan: 14 million residents.",
             "Lyon in France has 500000 inhabitants.", "Berlin, Germany, home to 3.6 million people.",
             "Oslo is in Norway and has 700000 people.", "Madrid has 3 million people and is in Spain.",
             "Rome, Italy, has 2.8 million inhabitants.", "Nairobi in Kenya: 4 million people.",
             "Toronto, Canada, population 2.7 million.", "Lima is the capital of Peru, 10 million people."],
    "order": ["Two apples please.", "I need milk and three loaves of bread.", "One pear.", "Four apples, two pears.",
              "Get me 6 milk bottles.", "Bread, just one.", "Three pears and a milk.", "Ten apples.",
              "Two breads and two milks.", "A pear and an apple."],
    "mood": ["I love this sunny day!", "This is the worst service ever.", "I lost my keys again.", "The meeting is at 3.",
             "We won the final!", "My dog is sick.", "Stop calling me!", "It is a normal Tuesday.",
             "Best birthday ever!", "I miss my friends."],
    "event": ["Team lunch on Friday with Ann and Bo.", "Dentist on Monday.", "Book club Wednesday: Cy, Di, Ed.",
              "Party on Saturday with Fay.", "Standup every Tuesday with Gus and Hal.", "Yoga on Sunday.",
              "Thursday review with Ida.", "Monday planning with Jo and Kim.", "Friday drinks with Lu.",
              "Wednesday call with Max and Ned."],
}


@pytest.fixture
def server(serve_app, local_gguf):
    return serve_app(local_gguf, None, api_keys=(CLIENT_KEY,), model_name="smollm2", max_queue=4)


def _schema_format(name: str) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}}


def test_strict_json_schema_over_fifty_prompts_always_validates(server):
    c = client(server.base)
    answers = 0
    for name, sentences in SENTENCES.items():
        for sentence in sentences:
            r = c.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": f"Extract the facts as JSON: {sentence}"}],
                response_format=_schema_format(name), max_tokens=128)
            choice = r.choices[0]
            assert choice.finish_reason == "stop", (sentence, choice.message.content)
            jsonschema.validate(json.loads(choice.message.content), SCHEMAS[name])
            answers += 1
    assert answers >= 50


def test_json_object_regex_lark_and_choice_over_the_wire(server):
    c = client(server.base)
    ask = [{"role": "user", "content": "Describe a cat as a JSON object."}]
    r = c.chat.completions.create(model="smollm2", messages=ask, response_format={"type": "json_object"},
                                  max_tokens=96)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:
        assert r.choices[0].message.content.lstrip().startswith("{")
    date = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "A date in 1999?"}],
                                     response_format={"type": "regex", "pattern": r"1999-\d{2}-\d{2}"}, max_tokens=16)
    assert date.choices[0].message.content.startswith("1999-") and len(date.choices[0].message.content) == 10
    lark = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Say hi."}],
                                     response_format={"type": "lark", "grammar": 'start: "hi " NAME\nNAME: /[a-z]{2,8}/'},
                                     max_tokens=16)
    text = lark.choices[0].message.content
    assert text.startswith("hi ") and 2 <= len(text) - 3 <= 8 and text[3:].isalpha()
    pick = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Is water wet?"}],
                                     response_format={"type": "choice", "choices": ["yes", "no"]}, max_tokens=8)
    assert pick.choices[0].message.content in ("yes", "no")


def test_streamed_schema_answer_and_the_clients_parse(server):
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    c = client(server.base)
    ask = [{"role": "user", "content": "Extract the facts as JSON: Alice is 31."}]
    whole = c.chat.completions.create(model="smollm2", messages=ask, response_format=_schema_format("person"),
                                      max_tokens=96).choices[0].message.content
    chunks = list(c.chat.completions.create(model="smollm2", messages=ask, response_format=_schema_format("person"),
                                            max_tokens=96, stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == whole
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == ["stop"]
    parsed = c.chat.completions.parse(model="smollm2", messages=ask, response_format=Person, max_tokens=96)
    person = parsed.choices[0].message.parsed  # the client's own strict schema from the class, then its parse
    assert isinstance(person, Person) and person.name and person.age >= 0


@pytest.mark.parametrize("fmt, words", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        "a": {"type": "strin"}}}}}, "strin"),
    ({"type": "regex", "pattern": "(("}, "unclosed group"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {  # a keyword llguidance does not implement
        "type": "object", "dependentSchemas": {"a": {"required": ["b"]}}}}}, 'Unimplemented keys: ["dependentSchemas"]'),
    ({"type": "xml"}, "is not a format edgekit knows"),
    ({"type": "json_schema"}, "needs 'json_schema'"),
])
def test_a_bad_format_is_a_400_naming_the_field(server, fmt, words):
    c = client(server.base)
    with pytest.raises(openai.BadRequestError) as exc:
        c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], response_format=fmt,
                                  max_tokens=8)
    err = exc.value.body
    assert exc.value.status_code == 400 and err["param"] == "response_format" and words in err["message"]
    assert err["type"] == "invalid_request_error"


def test_the_remote_tier_gets_the_same_schema(serve_app, broken_local, remote):
    """The local model fails, the router falls back: the real remote answers under the same JSON schema (its
    own grammar), and the answer parses on the way back."""
    router = Router(broken_local, remote, Policy(threshold=0.0))
    fmt = _schema_format("person")
    r = router.chat([{"role": "user", "content": "Extract the facts as JSON: Bob turned 45 yesterday."}],
                    response_format=fmt, max_tokens=96)
    jsonschema.validate(json.loads(r.text), SCHEMAS["person"])
    assert r.parsed == json.loads(r.text)
    server = serve_app(router)
    ans = client(server.base, key="unused").chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "Extract the facts as JSON: Alice is 31."}],
        response_format=fmt, max_tokens=96)
    assert ans.headers["x-edgekit-tier"] == "remote" and ans.headers["x-edgekit-trigger"] == "local_error"
    jsonschema.validate(json.loads(ans.parse().choices[0].message.content), SCHEMAS["person"])
    with pytest.raises(Exception) as exc:  # OpenAI's API has no regex format: said, not dropped
        router.chat([{"role": "user", "content": "hi"}], response_format={"type": "regex", "pattern": "a+"},
                    max_tokens=4)
    assert "has no regex response format" in str(exc.value)


def test_an_answer_that_cannot_finish_inside_the_format_goes_remote(serve_app, local_gguf, remote, tmp_path):
    """The constraint trigger: the local answer ran out of max_tokens inside the schema, so the router asks the
    remote with the same format; streamed too (a constrained local answer is held whole until judged); logged
    and counted. With room to finish, the same request stays local."""
    log = tmp_path / "decisions.jsonl"
    router = Router(local_gguf, remote, Policy(threshold=0.0), decision_log=log)
    fmt = _schema_format("person")
    ask = [{"role": "user", "content": "Extract the facts as JSON: Alice is 31."}]
    short = router.chat(ask, response_format=fmt, max_tokens=10)
    assert short.decision.tier == "remote" and short.decision.trigger == "constraint"
    assert "did not finish inside its json_schema format (max_tokens ran out)" in short.decision.reason
    roomy = router.chat(ask, response_format=fmt, max_tokens=96)
    assert roomy.decision.tier == "local" and roomy.decision.trigger is None
    jsonschema.validate(roomy.parsed, SCHEMAS["person"])
    server = serve_app(router, api_keys=(CLIENT_KEY,))
    c = client(server.base)
    for stream in (False, True):
        if stream:
            with c.chat.completions.with_streaming_response.create(
                    model="m", messages=ask, response_format=fmt, max_tokens=10, stream=True) as resp:
                headers, chunks = resp.headers, list(resp.parse())
            assert chunks[-1].model_extra["edgekit"]["trigger"] == "constraint"
        else:
            raw = c.chat.completions.with_raw_response.create(model="m", messages=ask, response_format=fmt,
                                                              max_tokens=10)
            headers = raw.headers
        assert headers["x-edgekit-tier"] == "remote" and headers["x-edgekit-trigger"] == "constraint"
    m = metrics_of(server.url)
    assert total(m, "edgekit_requests_total", trigger="constraint", tier="remote") == 2
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["trigger"] for r in records].count("constraint") == 3
