"""Generation on the real SmolLM2: ONNX equals transformers, GGUF equals llama-cpp-python."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgekit import GenerationConfig
from edgekit.runtimes.sampling import confidence

pytestmark = pytest.mark.slow

PROMPT = "The three primary colors are"
CHAT = [{"role": "user", "content": "Name three fruits."}]


def _softmax(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def test_onnx_greedy_equals_transformers(smol_onnx, smollm2_hf):
    import torch
    from transformers import AutoModelForCausalLM

    ids = smol_onnx.tokenize(PROMPT)
    ref = AutoModelForCausalLM.from_pretrained(smollm2_hf, dtype=torch.float32).eval()
    with torch.inference_mode():
        out = ref.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=2)
    expected = out[0, len(ids):].tolist()
    got = smol_onnx.generate_ids(ids, max_tokens=32, ignore_eos=True)
    assert got.token_ids == expected
    assert len(got.token_ids) == 32 and got.finish_reason == "length"


def test_gguf_greedy_equals_llama_cpp(smol_gguf, smollm2_gguf):
    from llama_cpp import Llama

    raw = Llama(str(smollm2_gguf), n_ctx=2048, n_threads=2, verbose=False)
    expected = raw.create_completion(PROMPT, max_tokens=32, temperature=0.0)["choices"][0]["text"]
    raw.close()
    got = smol_gguf.generate(PROMPT, max_tokens=32)
    assert got.text == expected
    assert got.finish_reason in ("length", "eos")


@pytest.mark.parametrize("which", ["smol_onnx", "smol_gguf"])
def test_seeded_sampling_is_reproducible(which, request):
    model = request.getfixturevalue(which)
    cfg = GenerationConfig(max_tokens=24, temperature=0.9, top_k=40, top_p=0.95, seed=7)
    a, b = model.generate(PROMPT, cfg), model.generate(PROMPT, cfg)
    c = model.generate(PROMPT, GenerationConfig(max_tokens=24, temperature=0.9, top_k=40, top_p=0.95, seed=8))
    assert a.token_ids == b.token_ids and a.text == b.text
    assert a.token_ids != c.token_ids


@pytest.mark.parametrize("which", ["smol_onnx", "smol_gguf"])
def test_finish_reasons_and_streaming(which, request):
    model = request.getfixturevalue(which)
    full = model.generate(PROMPT, max_tokens=20)
    assert full.finish_reason == "length" and len(full.token_ids) == 20
    # a stop string taken from the greedy text ends generation there, and is not included
    stop = full.text.split()[2]
    stopped = model.generate(PROMPT, max_tokens=20, stop=[stop])
    assert stopped.finish_reason == "stop" and stop not in stopped.text
    assert full.text.startswith(stopped.text)
    events = list(model.stream(PROMPT, max_tokens=20))
    assert "".join(e.text for e in events) == full.text
    assert [e.token_id for e in events] == full.token_ids
    assert events[-1].finish_reason == "length" and events[-1].timings.decode_tokens == 19
    assert all(e.finish_reason is None for e in events[:-1])
    chat = model.chat(CHAT, max_tokens=64)
    assert chat.finish_reason == "eos" and chat.text.strip()


def test_timings_are_consistent(smol_gguf):
    r = smol_gguf.generate(PROMPT, max_tokens=16)
    t = r.timings
    assert t.prompt_tokens == len(smol_gguf.tokenize(PROMPT))
    assert 0 < t.prefill_s <= t.ttft_s <= t.total_s and t.decode_tokens == 15 and len(t.token_latencies_s) == 15
    assert t.decode_tps > 0 and t.prefill_tps > 0 and t.load_s > 0


def test_onnx_confidence_matches_independent_softmax(smol_onnx):
    ids = smol_onnx.tokenize(PROMPT)
    r = smol_onnx.generate_ids(ids, max_tokens=12, ignore_eos=True)
    logits = smol_onnx.sequence_logits(ids + r.token_ids)
    for i, tok in enumerate(r.token_ids):
        p = _softmax(logits[len(ids) - 1 + i])
        assert r.probs[i] == pytest.approx(p[tok], rel=1e-3, abs=1e-6)
        assert r.entropies[i] == pytest.approx(-(p * np.log(np.clip(p, 1e-300, None))).sum(), rel=1e-3, abs=1e-5)
        assert 0.0 < r.probs[i] <= 1.0


def test_gguf_confidence_matches_independent_softmax(smol_gguf, smollm2_gguf):
    from llama_cpp import Llama

    r = smol_gguf.generate(PROMPT, max_tokens=12, ignore_eos=True)
    ids = smol_gguf.tokenize(PROMPT)
    raw = Llama(str(smollm2_gguf), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    raw.eval(ids)  # prefill as one batch, then one token per step, as generation does
    for tok in r.token_ids[:-1]:
        raw.eval([tok])
    scores = np.array(raw.scores[: len(ids) + len(r.token_ids) - 1])
    raw.close()
    for i, tok in enumerate(r.token_ids):
        p = _softmax(scores[len(ids) - 1 + i])
        assert r.probs[i] == pytest.approx(p[tok], rel=1e-4, abs=1e-6)
        assert r.entropies[i] == pytest.approx(-(p * np.log(np.clip(p, 1e-300, None))).sum(), rel=1e-3, abs=1e-5)
    assert confidence(np.array([0.0, 0.0], np.float32), 1) == pytest.approx((0.5, np.log(2)))


def test_thread_safety_serialises(smol_gguf):
    expected = smol_gguf.generate(PROMPT, max_tokens=12).text
    results, errors = [], []

    def work():
        try:
            results.append(smol_gguf.generate(PROMPT, max_tokens=12).text)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected] * 3


def test_minilm_embed_matches_gate_reference(onnx_artifact, minilm_dir):
    import edgekit
    from edgekit.quality import BUILTIN_PROMPTS, compute_reference

    model = edgekit.load(onnx_artifact("minilm-fp32").path)
    ref = compute_reference("encoder", minilm_dir, list(BUILTIN_PROMPTS), model.tokenizer, encoder_settings=("mean", True))
    vecs = model.embed(list(BUILTIN_PROMPTS), batch_size=7)
    cos = (vecs * ref.outputs).sum(1) / np.linalg.norm(vecs, axis=1) / np.linalg.norm(ref.outputs, axis=1)
    assert cos.min() >= 0.999
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs.shape == (len(BUILTIN_PROMPTS), 384)
    # batching does not change the result
    assert np.allclose(model.embed(list(BUILTIN_PROMPTS), batch_size=32), vecs, atol=1e-5)
