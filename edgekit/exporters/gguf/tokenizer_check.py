"""The proof against llama.cpp: a GGUF vocabulary must tokenize like the Hugging Face tokenizer.

Each candidate setting of a :class:`~edgekit.exporters.gguf.vocab.Vocab` (the
pre-tokenizer names from :mod:`edgekit.exporters.gguf.pretokenizer`, or the
SentencePiece space prefix) is written as a vocabulary-only GGUF, loaded by
llama.cpp (llama-cpp-python, ``vocab_only``), and must tokenize a varied probe
text set (English, code, digits, accents, CJK, emoji, whitespace runs, the
model's special tokens) token for token like the Hugging Face tokenizer. The
first candidate that also detokenizes the same wins.

A tokenizer that no candidate reproduces raises :class:`UnsupportedModelError`
instead of producing a GGUF that tokenizes differently from the original.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from edgekit.errors import UnsupportedModelError
from edgekit.exporters.gguf.pretokenizer import NO_CLEAN_SPACES
from edgekit.exporters.gguf.vocab import CONTROL, USER_DEFINED, Vocab

PROBE_TEXTS: tuple[str, ...] = (
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we'd rather you didn't. DON'T SHOUT, it's 'quoted'.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n\treturn fibonacci(n - 1) + fibonacci(n - 2)  # tabs\n",
    "Numbers: 0 7 42 123 2024 3.14159 1,000,000 and 12345678901234567890; phone +1 (555) 010-9999.",
    "Café, naïve, façade, Ångström, Übermensch, señor, crème brûlée, São Paulo, Dvořák, Łódź.",
    "机器学习是人工智能的一个分支。日本語のテキストです。한국어 문장입니다. Привет, мир! Γειά σου κόσμε. مرحبا بالعالم",
    "Emoji: 🦊🚀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨ and symbols ∑ ∫ √ ≤ ≥ € £ ¥ © ™ — – … “quotes” «guillemets»",
    "   leading spaces, trailing spaces   \n\n\nmany newlines\r\nwindows line\t\ttabs  and  double  spaces ",
    'SELECT * FROM users WHERE id=42;\n{"key": [1, 2, 3], "nested": {"a": null}}\n<div class="x">&amp;</div>',
    "https://example.com/path?q=1&r=two#frag user@example.org ~/.config/app.toml C:\\Windows\\System32",
    "Hello , world . Is it ? Yes ! don 't ' s",
    " ",
    "a",
)


def _hf_decode(vocab: Vocab, ids: list[int]) -> str:
    return vocab.hf.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=vocab.clean_up_spaces)


class LlamaVocab:
    """A vocabulary-only GGUF opened by llama.cpp: tokenize and detokenize as llama.cpp does."""

    def __init__(self, path: Path):
        from edgekit.deps import llama_cpp_module

        lc = llama_cpp_module("GGUF export")
        params = lc.llama_model_default_params()
        params.vocab_only = True
        self._lc = lc
        self._model = lc.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise UnsupportedModelError(f"llama.cpp refused the vocabulary written for this tokenizer ({path.name})")
        self._vocab = lc.llama_model_get_vocab(self._model)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (self._lc.llama_token * n_max)()
        n = self._lc.llama_tokenize(self._vocab, data, len(data), buf, n_max, add_special, True)
        if n < 0:
            buf = (self._lc.llama_token * -n)()
            n = self._lc.llama_tokenize(self._vocab, data, len(data), buf, -n, add_special, True)
        return list(buf[:n])

    def detokenize(self, ids: list[int]) -> str:
        arr = (self._lc.llama_token * max(1, len(ids)))(*ids)
        size = 64 + 16 * len(ids)
        out = ctypes.create_string_buffer(size)
        n = self._lc.llama_detokenize(self._vocab, arr, len(ids), out, size, False, True)
        if n < 0:
            size = -n
            out = ctypes.create_string_buffer(size)
            n = self._lc.llama_detokenize(self._vocab, arr, len(ids), out, size, False, True)
        return out.raw[:n].decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._model:
            self._lc.llama_model_free(self._model)
            self._model = None


def probe_texts(vocab: Vocab) -> list[str]:
    specials = [t for t, ty in zip(vocab.tokens, vocab.types) if ty in (CONTROL, USER_DEFINED)][:6]
    texts = list(PROBE_TEXTS)
    if specials:
        texts.append("".join(f"{s}text {i}\n" for i, s in enumerate(specials)))
        texts.append(f"{specials[0]} spaced {specials[-1]}end")
    return texts


def compare(vocab: Vocab, llama: LlamaVocab) -> tuple[list[str], list[str]]:
    """Token mismatches and detokenization mismatches between llama.cpp and the HF tokenizer on the probes."""
    token_bad, text_bad = [], []
    for text in probe_texts(vocab):
        for add_special in (True, False):
            want = vocab.hf(text, add_special_tokens=add_special)["input_ids"]
            got = llama.tokenize(text, add_special)
            if want != got:
                token_bad.append(f"{text[:40]!r}: HF {want[:12]} vs llama.cpp {got[:12]}")
                break
        else:
            ids = vocab.hf(text, add_special_tokens=False)["input_ids"]
            if _hf_decode(vocab, ids) != llama.detokenize(ids):
                text_bad.append(text[:40])
    return token_bad, text_bad


def choose_settings(vocab: Vocab, write_vocab_only: Callable[[Vocab, Path], None], work: Path,
                    log: Callable[[str], None] = lambda m: None) -> Vocab:
    """Try each candidate setting with llama.cpp; return the vocab with the first that tokenizes
    (and, preferably, detokenizes) exactly like Hugging Face, or raise :class:`UnsupportedModelError`."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
    candidates = list(vocab.candidates or [{}])
    if vocab.model == "gpt2":  # prefer the names whose space clean-up matches the HF tokenizer's setting
        candidates.sort(key=lambda c: (c.get("pre") in NO_CLEAN_SPACES) == vocab.clean_up_spaces)
    fallback, failures = None, []
    for i, settings in enumerate(candidates):
        trial = replace(vocab, **settings)
        path = work / f".vocab-probe-{i}.gguf"
        write_vocab_only(trial, path)
        llama = LlamaVocab(path)
        try:
            token_bad, text_bad = compare(trial, llama)
        finally:
            llama.close()
            path.unlink(missing_ok=True)
        label = ", ".join(f"{k}={v}" for k, v in settings.items()) or "default"
        if not token_bad and not text_bad:
            log(f"tokenizer: llama.cpp reproduces it exactly with {label}")
            return trial
        if not token_bad and fallback is None:
            fallback = trial
            failures.append(f"{label}: detokenization differs on {text_bad[0]!r}")
        elif token_bad:
            failures.append(f"{label}: {token_bad[0]}")
    if fallback is not None:
        log(f"tokenizer: token ids match; detokenized text differs in spacing ({failures[-1]})")
        return fallback
    raise UnsupportedModelError(
        "llama.cpp cannot reproduce this tokenizer (tried " + "; ".join(failures[:3]) + "): "
        "a GGUF would tokenize differently from the original"
    )
