"""The ONNX decoder's step loop on the fused graph (shared KV buffer, edgekit/runtimes/onnx.py and onnx_kv.py).

The KV buffers stay bound to the IOBinding between steps and the logits are written into an array of
their shape: these tests hold the loop to what a fresh binding per step gave (the same logits, the
same tokens, the cache forgotten between requests, the buffers bound again when they change).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgekit
from edgekit.errors import ContextOverflowError

PROMPT = [5, 17, 42, 99, 7, 23, 61, 88, 13]
STEPS = [31, 64, 2, 77, 150, 9]


def _count_kv_binds(model) -> list[str]:
    """Names of the KV buffers bound to ``model``'s IOBinding from now on (spies on the real binding)."""
    bound: list[str] = []
    b = model._binding
    real_in, real_out = b.bind_ortvalue_input, b.bind_ortvalue_output

    def bind_in(name, value):
        bound.append(name)
        return real_in(name, value)

    def bind_out(name, value):
        if name != "logits":
            bound.append(name)
        return real_out(name, value)

    b.bind_ortvalue_input, b.bind_ortvalue_output = bind_in, bind_out
    return bound


def test_steps_return_the_logits_of_a_full_prefill_and_own_them(tiny_onnx):
    with edgekit.load(tiny_onnx.path) as model:
        assert model.fused
        model._reset()
        out = [model.forward(PROMPT)] + [model.forward([t]) for t in STEPS]
        first = out[1].copy()
        seq = model.sequence_logits(PROMPT + STEPS)
    assert np.array_equal(out[1], first)  # a later step did not write into an earlier step's logits
    assert not any(np.shares_memory(a, b) for a, b in zip(out, out[1:]))
    assert np.abs(np.stack(out) - seq[len(PROMPT) - 1:]).max() < 1e-4
    assert seq.shape == (len(PROMPT) + len(STEPS), out[0].shape[0])


def test_a_vocabulary_the_graph_leaves_symbolic_is_read_from_the_first_run(tiny_onnx):
    with edgekit.load(tiny_onnx.path) as model:
        want = model.sequence_logits(PROMPT + STEPS)
    with edgekit.load(tiny_onnx.path) as model:
        model._vocab = None  # as for a graph whose logits shape names its last dimension
        model._reset()
        out = [model.forward(PROMPT)] + [model.forward([t]) for t in STEPS]
        assert model._vocab == want.shape[1]
    assert np.abs(np.stack(out) - want[len(PROMPT) - 1:]).max() < 1e-4


def test_kv_buffers_are_bound_once_per_buffer_not_per_step(tiny_onnx):
    with edgekit.load(tiny_onnx.path, context=32) as model:
        bound = _count_kv_binds(model)
        model.generate_ids(PROMPT, max_tokens=8, ignore_eos=True)
        n_kv = 2 * len(model.past_names)  # past and present of every layer, once
        assert len(bound) == n_kv
        model.generate_ids(PROMPT, max_tokens=8, ignore_eos=True)
        assert len(bound) == n_kv  # a new request reuses the bound buffers
        model.context_length = 48  # a new capacity: new buffers, bound again
        model.generate_ids(PROMPT, max_tokens=8, ignore_eos=True)
        assert len(bound) == 2 * n_kv


def test_requests_forget_the_cache_and_a_new_capacity_keeps_the_tokens(tiny_onnx):
    with edgekit.load(tiny_onnx.path, context=64) as fresh:
        want = fresh.generate_ids(STEPS, max_tokens=12, ignore_eos=True)
    with edgekit.load(tiny_onnx.path, context=32) as model:
        model.generate_ids(PROMPT, max_tokens=12, ignore_eos=True)
        model.context_length = 64
        got = model.generate_ids(STEPS, max_tokens=12, ignore_eos=True)
    assert got.token_ids == want.token_ids
    assert np.allclose(got.probs, want.probs, rtol=0, atol=1e-6)
    assert np.allclose(got.entropies, want.entropies, rtol=0, atol=1e-6)


def test_a_full_buffer_is_a_context_error_and_the_model_still_runs_after_it(tiny_onnx):
    with edgekit.load(tiny_onnx.path, context=16) as model:
        model._reset()
        model.forward(list(range(3, 15)))
        with pytest.raises(ContextOverflowError):
            model.forward(list(range(3, 9)))
        r = model.generate_ids(list(range(3, 10)), max_tokens=9, ignore_eos=True)
        assert len(r.token_ids) == 9 and r.finish_reason == "length"
        assert model._n_past == 16 - 1  # the budget filled the buffer but for the last token, never fed
