"""The official openai client against edgekit serve over a local GGUF and the MiniLM encoder."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from tests.serve.conftest import CLIENT_KEY, client, metrics_of, total

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def local_server(serve_app, local_gguf, minilm_encoder):
    return serve_app(local_gguf, minilm_encoder, api_keys=(CLIENT_KEY, "sk-second-key-0000"), model_name="smollm2",
                     max_queue=4)


def test_chat_matches_the_model_in_process_and_says_which_tier_answered(local_server, local_gguf):
    direct = local_gguf.chat(QUESTION, max_tokens=12)
    raw = client(local_server.base).chat.completions.with_raw_response.create(model="smollm2", messages=QUESTION, max_tokens=12)
    r = raw.parse()
    assert r.object == "chat.completion" and r.model == "smollm2"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == direct.text  # greedy: the same text as in process
    assert r.choices[0].finish_reason == ("length" if direct.finish_reason == "length" else "stop")
    assert r.usage.prompt_tokens == direct.timings.prompt_tokens and r.usage.completion_tokens == len(direct.token_ids)
    assert raw.headers["x-edgekit-tier"] == "local" and raw.headers["x-edgekit-trigger"] == "none"
    assert r.model_extra["edgekit"]["tier"] == "local" and r.model_extra["edgekit"]["trigger"] is None


def test_chat_stream_joins_into_the_non_streamed_answer(local_server):
    c = client(local_server.base)
    whole = c.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=10).choices[0].message.content
    with c.chat.completions.with_streaming_response.create(model="smollm2", messages=QUESTION, max_tokens=10, stream=True,
                                                           stream_options={"include_usage": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-edgekit-tier"] == "local" and resp.headers["x-edgekit-trigger"] == "none"
        chunks = list(resp.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == whole
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finishes) == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 10 and not chunks[-1].choices


def test_logprobs_come_from_the_local_confidence(local_server, local_gguf):
    direct = local_gguf.chat(QUESTION, max_tokens=6)
    r = client(local_server.base).chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=6, logprobs=True)
    lps = r.choices[0].logprobs.content
    assert len(lps) == len(direct.probs)
    for entry, p in zip(lps, direct.probs):
        assert entry.logprob == pytest.approx(math.log(p), abs=1e-6)
        assert entry.top_logprobs == []
    assert "".join(e.token for e in lps) == r.choices[0].message.content
    with pytest.raises(Exception) as exc:
        client(local_server.base).chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=6, logprobs=True,
                                                          top_logprobs=3)
    assert exc.value.status_code == 400 and exc.value.body["param"] == "top_logprobs"


def test_completions_stream_and_not(local_server, local_gguf):
    c = client(local_server.base)
    direct = local_gguf.generate("The capital of France is", max_tokens=8)
    r = c.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, logprobs=0)
    assert r.object == "text_completion" and r.choices[0].text == direct.text
    assert r.choices[0].logprobs.token_logprobs == pytest.approx([math.log(p) for p in direct.probs], abs=1e-6)
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="smollm2", prompt="The capital of France is", max_tokens=8, stream=True))
    assert streamed == direct.text


def test_sampling_settings_reach_the_model(local_server, local_gguf):
    c = client(local_server.base)
    kw = dict(model="smollm2", messages=QUESTION, max_tokens=12, temperature=1.3, top_p=0.9, seed=7)
    a = c.chat.completions.create(**kw).choices[0].message.content
    assert a == c.chat.completions.create(**kw).choices[0].message.content  # seeded: reproducible
    assert a == local_gguf.chat(QUESTION, max_tokens=12, temperature=1.3, top_p=0.9, seed=7).text
    stopped = c.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=24, stop=[","])
    assert stopped.choices[0].message.content and "," not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"


def test_embeddings_equal_the_encoder_in_process(local_server, minilm_encoder):
    c = client(local_server.base)
    texts = ["Small models run on phones.", "Edge devices answer quickly."]
    want = minilm_encoder.embed(texts)
    r = c.embeddings.create(model="minilm", input=texts)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in r.data])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert r.usage.prompt_tokens == sum(len(minilm_encoder.tokenize(t)) for t in texts)
    single = c.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    # alone, not in a batch: int8 dynamic quantization's ranges depend on the batch (padding included)
    np.testing.assert_allclose(single.data[0].embedding, minilm_encoder.embed([texts[0]])[0], atol=1e-6)
    with pytest.raises(Exception) as exc:
        c.embeddings.create(model="minilm", input=texts[0], dimensions=7)
    assert exc.value.status_code == 400 and exc.value.body["param"] == "dimensions"


def test_models_lists_the_chat_and_the_embedding_model(local_server, minilm_encoder):
    ids = [m.id for m in client(local_server.base).models.list()]
    assert ids[0] == "smollm2" and len(ids) == 2


def test_a_wrong_or_missing_key_gets_401_in_openai_shape_and_health_stays_open(local_server):
    import openai

    for key in ("sk-wrong-key-1234", "sk-edgekit-serve-test-5f1c2"):  # the second: a prefix of the right one
        with pytest.raises(openai.AuthenticationError) as exc:
            client(local_server.base, key=key).chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=2)
        err = exc.value.body
        assert exc.value.status_code == 401 and set(err) == {"message", "type", "param", "code"}
        assert err["code"] == "invalid_api_key" and key not in err["message"]
    assert client(local_server.base, key="sk-second-key-0000").models.list().data  # every configured key works
    no_key = httpx.get(local_server.base + "/models", timeout=30)
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(local_server.url + "/metrics", timeout=30).status_code == 401
    assert httpx.get(local_server.url + "/health", timeout=30).json() == {"status": "ok"}


def _post(server, body, **kw):
    return httpx.post(server.base + "/chat/completions", json=body, headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                      timeout=60, **kw)


@pytest.mark.parametrize("body, param", [
    ({"messages": QUESTION, "n": 2}, "n"),
    ({"messages": QUESTION, "tools": [{"type": "code_interpreter"}]}, "tools"),  # only function tools
    ({"messages": QUESTION, "frobnicate": True}, "frobnicate"),
    ({"messages": QUESTION, "temperature": 3}, "temperature"),
    ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
    ({"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ({"messages": QUESTION, "stream_options": {"include_usage": True}}, "stream_options"),
])
def test_unsupported_or_invalid_fields_get_400_naming_the_field(local_server, body, param):
    r = _post(local_server, body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_malformed_json_too_large_bodies_and_unknown_paths(local_server):
    r = httpx.post(local_server.base + "/chat/completions", content=b"{not json",
                   headers={"Authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    big = {"messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    r = _post(local_server, big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b"x" * 65536

    r = httpx.post(local_server.base + "/chat/completions", content=chunked(),
                   headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30)
    assert r.status_code == 413
    r = httpx.get(local_server.base + "/nothing-here", headers={"Authorization": f"Bearer {CLIENT_KEY}"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_context_overflow_without_a_remote_is_a_400(serve_app, short_context_gguf):
    server = serve_app(short_context_gguf)
    r = httpx.post(server.base + "/chat/completions", json={"messages": [{"role": "user", "content": "word " * 200}]},
                   timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_metrics_parse_and_count_the_requests_sent(serve_app, local_gguf, minilm_encoder):
    server = serve_app(local_gguf, minilm_encoder)
    c = client(server.base, key="unused")
    for _ in range(3):
        c.chat.completions.create(model="m", messages=QUESTION, max_tokens=2)
    for _ in range(2):
        list(c.completions.create(model="m", prompt="Hello", max_tokens=2, stream=True))
    c.embeddings.create(model="e", input=["a", "b"])
    assert httpx.post(server.base + "/chat/completions", json={"messages": QUESTION, "n": 3}, timeout=30).status_code == 400
    m = metrics_of(server.url, key=None)
    assert total(m, "edgekit_requests_total", endpoint="chat", tier="local", trigger="none", outcome="ok") == 3
    assert total(m, "edgekit_requests_total", endpoint="completions", tier="local", outcome="ok") == 2
    assert total(m, "edgekit_requests_total", endpoint="embeddings", outcome="ok") == 1
    assert total(m, "edgekit_requests_total", endpoint="chat", outcome="invalid") == 1
    assert total(m, "edgekit_requests_total") == 7
    assert total(m, "edgekit_generated_tokens_total", tier="local") == 10
    assert total(m, "edgekit_ttft_seconds_count", tier="local") == 5
    assert total(m, "edgekit_local_share") == 1.0
    assert total(m, "edgekit_queue_depth", lane="local") == 0 and total(m, "edgekit_slots", lane="local") == 1
