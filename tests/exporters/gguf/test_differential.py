"""Differential tests: an edgekit f16 GGUF run in llama.cpp against the transformers model it came from.

Families: SmolLM2-135M-Instruct (llama architecture: q/k permutation for
rotary, byte-level BPE with llama.cpp's "smollm" pre-tokenizer), tiny random
Qwen2 models (NEOX rotary, q/k/v biases) with a GPT-2-split and a Qwen2-split
byte-level BPE tokenizer, and a tiny random Gemma 3 (sliding window of 8 over
longer sequences, local and global layers with their own rope bases).
"""

from __future__ import annotations

import pytest

import edgekit
from edgekit.exporters.gguf import export_gguf
from tests.exporters.gguf.differential import greedy_both, tokenization_mismatches


@pytest.mark.slow
def test_smollm2_f16_matches_transformers(gguf_exports, smollm2_hf):
    art = gguf_exports("f16")
    m = art.manifest
    assert m.format == "gguf" and m.precision == "f16" and m.model_file == "model-f16.gguf"
    assert m.gate.status == "passed" and m.gate.n_prompts == 20
    assert m.gate.metrics["kl_mean"] < 1e-3 and m.gate.metrics["top1"] >= 0.99, m.gate.metrics
    assert m.quantization.params["gguf_arch"] == "llama" and m.quantization.params["tokenizer_pre"] == "smollm"
    model = edgekit.load(art.path, threads=1)
    try:
        assert model.backend == "llama.cpp"
        assert tokenization_mismatches(smollm2_hf, model) == []
        for prompt in ("The capital of France is", "def fibonacci(n):\n"):
            ref_ids, ids, ref_text, text = greedy_both(smollm2_hf, model, prompt, 32)
            assert ids == ref_ids and len(ids) == 32
            assert text == ref_text and text.strip()
        reply = model.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=24)
        assert "Paris" in reply.text
    finally:
        model.close()


@pytest.mark.parametrize("which", ["gpt2-split", "qwen2-split"])
def test_tiny_qwen2_f16_matches_transformers(which, tiny_qwen2, tiny_qwen2_qwentok, tmp_path):
    src = tiny_qwen2 if which == "gpt2-split" else tiny_qwen2_qwentok
    m = _f16_matches_transformers(src, tmp_path, "qwen2")
    assert m.quantization.params["tokenizer_pre"] == ("gpt-2" if which == "gpt2-split" else "qwen2")


def _f16_matches_transformers(src, tmp_path, gguf_arch: str):
    """Export ``src`` to f16: gated near-exact, tokenizes as transformers does, 32 greedy tokens equal; the manifest."""
    art = export_gguf(src, tmp_path / "out", quant="f16")
    m = art.manifest
    assert m.quantization.params["gguf_arch"] == gguf_arch
    assert m.gate.metrics["kl_mean"] < 1e-3 and m.gate.metrics["top1"] >= 0.99, m.gate.metrics
    model = edgekit.load(art.path, threads=1)
    try:
        assert tokenization_mismatches(src, model) == []
        ref_ids, ids, ref_text, text = greedy_both(src, model, "The capital of France is", 32)
        assert ids == ref_ids and text == ref_text and len(ids) == 32
    finally:
        model.close()
    return m


def _printable(text: str) -> str:
    return "".join(c for c in text if c == "\n" or (c >= " " and c != "\ufffd"))


def test_sentencepiece_llama_f16_matches_transformers(tmp_path):
    """The SentencePiece path (Llama 2 / TinyLlama style): scores and byte tokens from tokenizer.model, BOS added."""
    from tests.exporters.gguf.models import make_tiny_spm_llama

    src = make_tiny_spm_llama(tmp_path / "spm-llama")
    art = export_gguf(src, tmp_path / "out", quant="f16")
    m = art.manifest
    assert m.quantization.params["tokenizer"] == "llama" and m.quantization.params["tokenizer_pre"] is None
    assert m.gate.metrics["kl_mean"] < 1e-3 and m.gate.metrics["top1"] >= 0.99, m.gate.metrics
    model = edgekit.load(art.path, threads=1, context=256)
    try:
        assert tokenization_mismatches(src, model) == []
        assert model.tokenize("hello")[0] == 1  # BOS, as the Hugging Face tokenizer adds it
        ref_ids, ids, ref_text, text = greedy_both(src, model, "The capital of France is", 32)
        # a random model emits stray byte-fallback tokens: transformers turns a whole run of byte tokens that is
        # not valid UTF-8 into U+FFFD (even a valid control byte in it), llama.cpp only the invalid bytes
        assert ids == ref_ids and text.strip()
        assert _printable(model.detokenize(ids)) == _printable(ref_text)
    finally:
        model.close()


def test_tiny_gemma3_f16_matches_transformers(tiny_arch, tmp_path):
    # prompt + 32 tokens: far past the window of 8, through llama.cpp's sliding-window KV cache
    _f16_matches_transformers(tiny_arch("gemma3_text"), tmp_path, "gemma3")
