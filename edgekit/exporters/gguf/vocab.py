"""Hugging Face tokenizers -> GGUF vocabulary, proven against llama.cpp's own tokenizer.

llama.cpp does not run the Hugging Face tokenizer: it re-implements a fixed set
of pre-tokenizers (regex splits) chosen by the ``tokenizer.ggml.pre`` name, on top
of the vocabulary and merges stored in the GGUF. llama.cpp's converter picks
that name from a table of hashes of known models' tokenizations; a retrained
vocabulary (or any model not in the table) gets no name at all.

edgekit picks it in two steps instead:

1. a structural fingerprint of ``tokenizer.json`` (normalizer, pre-tokenizer
   steps and their regexes) names the llama.cpp pre-tokenizers whose regexes do
   the same split (the candidates);
2. each candidate is written as a vocabulary-only GGUF, loaded by llama.cpp
   (llama-cpp-python, ``vocab_only``), and must tokenize a varied probe text set
   (English, code, digits, accents, CJK, emoji, whitespace runs, the model's
   special tokens) token for token like the Hugging Face tokenizer. The first
   candidate that also detokenizes the same wins.

A tokenizer that no candidate reproduces raises :class:`UnsupportedModelError`
instead of producing a GGUF that tokenizes differently from the original.
"""

from __future__ import annotations

import ctypes
import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import MissingDependencyError, UnsupportedModelError

# Token types, as llama.cpp reads them (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

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


@dataclass
class Vocab:
    """Everything a GGUF needs about a tokenizer (``tokenizer.ggml.*`` and the chat template)."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece)
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    pre: str | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad, eot
    chat_template: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)  # settings to try against llama.cpp
    hf: Any = None  # the Hugging Face tokenizer (transformers, fast)
    clean_up_spaces: bool = False

    def write(self, writer) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        if self.scores is not None:
            writer.add_token_scores(self.scores)
        if self.merges:
            writer.add_token_merges(self.merges)
        setters = {
            "bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id,
            "pad": writer.add_pad_token_id, "eot": writer.add_eot_token_id,
        }
        for name, value in self.special_ids.items():
            setters[name](value)
        writer.add_add_bos_token(self.add_bos)
        writer.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            writer.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            writer.add_chat_template(self.chat_template)


# ---------------------------------------------------------------- reading the Hugging Face tokenizer


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class _TokenizersTokenizer:
    """The slice of a transformers fast tokenizer this module uses, on the ``tokenizers`` library alone.

    Used when ``tokenizer.json`` says everything (no ``add_bos_token``/``add_eos_token`` in
    tokenizer_config.json, which transformers' Llama/Gemma classes apply on top): importing
    transformers pulls in torch, which alone took the converter's peak RSS from ~200 MB to ~470 MB.
    """

    def __init__(self, path: Path, tok_cfg: dict[str, Any]):
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(path))
        self.backend_tokenizer.no_padding()
        self.backend_tokenizer.no_truncation()
        for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            setattr(self, name, _token_text(tok_cfg.get(name)))

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool = False) -> str:
        text = self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return clean_up_spaces(text) if clean_up_tokenization_spaces else text

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.backend_tokenizer.token_to_id(token)

    def convert_ids_to_tokens(self, i: int) -> str | None:
        return self.backend_tokenizer.id_to_token(i)


def clean_up_spaces(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _load_hf(folder: Path, tok_cfg: dict[str, Any]):
    if (folder / "tokenizer.json").is_file() and not {"add_bos_token", "add_eos_token"} & set(tok_cfg):
        try:
            return _TokenizersTokenizer(folder / "tokenizer.json", tok_cfg)
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise UnsupportedModelError(f"{folder}/tokenizer.json cannot be read ({str(exc)[:200]})") from exc
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("transformers (to read the tokenizer)", "export") from exc
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)
    except Exception as exc:  # transformers raises many types for missing/odd tokenizers
        raise UnsupportedModelError(
            f"{folder} has no tokenizer transformers can load ({type(exc).__name__}: {str(exc)[:200]}); "
            "GGUF export needs tokenizer.json or tokenizer.model"
        ) from exc
    if not getattr(tok, "is_fast", False):
        raise UnsupportedModelError(f"{folder}: the tokenizer has no fast (tokenizer.json) form, which GGUF export needs")
    return tok


def read_vocab(folder: Path, n_rows: int, config: dict[str, Any]) -> Vocab:
    """Read the folder's tokenizer into a :class:`Vocab` padded to ``n_rows`` (the embedding's rows)."""
    from edgekit.runtimes.tokenizer import read_chat_template

    tok_cfg = _read_json(folder / "tokenizer_config.json")
    hf = _load_hf(folder, tok_cfg)
    tj = json.loads(hf.backend_tokenizer.to_str())
    model = tj.get("model") or {}
    kind = model.get("type")
    if kind != "BPE":
        raise UnsupportedModelError(
            f"{folder}: {kind or 'unknown'} tokenizers cannot be expressed in GGUF by edgekit "
            "(supported: byte-level BPE and SentencePiece BPE)"
        )
    if _has_step(tj.get("pre_tokenizer"), "ByteLevel") or _has_step(tj.get("decoder"), "ByteLevel"):
        vocab = _bpe_vocab(tj, n_rows, folder)
    elif model.get("byte_fallback") or (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(tj, n_rows, folder)
    else:
        raise UnsupportedModelError(f"{folder}: a BPE tokenizer that is neither byte-level nor SentencePiece-style")
    vocab.hf = hf
    vocab.clean_up_spaces = bool(tok_cfg.get("clean_up_tokenization_spaces", False))
    vocab.chat_template = read_chat_template(folder, tok_cfg)
    _special_ids(vocab, hf, tok_cfg, config, _read_json(folder / "generation_config.json"))
    return vocab


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _steps(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out = []
        for key in ("pretokenizers", "normalizers", "decoders", "processors"):
            for child in node.get(key) or []:
                out += _steps(child)
        return out
    return [node]


def _has_step(node: Any, kind: str) -> bool:
    return any(s.get("type") == kind for s in _steps(node))


def _id_table(tj: dict[str, Any], n_rows: int, folder: Path) -> tuple[list[str | None], dict[int, dict]]:
    vocab: dict[str, int] = tj["model"].get("vocab") or {}
    added = {int(t["id"]): t for t in tj.get("added_tokens") or []}
    size = max([*vocab.values(), *added, -1]) + 1
    if size > n_rows:
        raise UnsupportedModelError(
            f"{folder}: the tokenizer has {size} tokens but the embedding only {n_rows} rows; they must agree"
        )
    table: list[str | None] = [None] * n_rows
    for text, i in vocab.items():
        table[i] = text
    for i, t in added.items():
        table[i] = t["content"]
    return table, added


def _bpe_vocab(tj: dict[str, Any], n_rows: int, folder: Path) -> Vocab:
    table, added = _id_table(tj, n_rows, folder)
    tokens, types = [], []
    for i, text in enumerate(table):
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        elif i in added:
            # Added tokens are stored as their UTF-8 text; llama.cpp matches them before the BPE split.
            tokens.append(text)
            types.append(CONTROL if added[i].get("special") else USER_DEFINED)
        else:
            tokens.append(text)
            types.append(NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"].get("merges") or []]
    vocab = Vocab(model="gpt2", tokens=tokens, types=types, merges=merges)
    vocab.candidates = [{"pre": name} for name in pre_candidates(tj, folder)]
    return vocab


def _spm_vocab(tj: dict[str, Any], n_rows: int, folder: Path) -> Vocab:
    """SentencePiece vocabularies: scores and types from tokenizer.model when sentencepiece can read it,
    else from tokenizer.json (score = minus the rank of the merge that makes the token)."""
    table, added = _id_table(tj, n_rows, folder)
    scores = [0.0] * n_rows
    types = [NORMAL] * n_rows
    sp_path = folder / "tokenizer.model"
    sp = None
    if sp_path.is_file():
        try:
            import sentencepiece

            sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_path))
        except (ImportError, OSError, RuntimeError):
            sp = None
    if sp is not None:
        for i in range(min(sp.vocab_size(), n_rows)):
            table[i] = sp.id_to_piece(i)
            scores[i] = float(sp.get_score(i))
            types[i] = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else UNUSED if sp.is_unused(i)
                        else BYTE if sp.is_byte(i) else NORMAL)
    else:
        rank = {}
        for r, m in enumerate(tj["model"].get("merges") or []):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            rank.setdefault(a + b, r)
        unk = tj["model"].get("unk_token")
        for i, text in enumerate(table):
            if text is None:
                continue
            scores[i] = -float(rank.get(text, 0))
            if re.fullmatch(r"<0x[0-9A-F]{2}>", text):
                types[i] = BYTE
            elif text == unk:
                types[i] = UNKNOWN
    tokens = []
    for i, text in enumerate(table):
        if i in added:
            types[i] = CONTROL if added[i].get("special") else USER_DEFINED
            text = added[i]["content"]
        if text is None:
            text, types[i] = f"[PAD{i}]", UNUSED
        tokens.append(text)
    prefix = _spm_adds_prefix(tj)
    vocab = Vocab(model="llama", tokens=tokens, types=types, scores=scores)
    vocab.candidates = [{"add_space_prefix": prefix}, {"add_space_prefix": not prefix}]
    return vocab


def _spm_adds_prefix(tj: dict[str, Any]) -> bool:
    for s in _steps(tj.get("normalizer")):
        if s.get("type") == "Prepend":
            return True
    for s in _steps(tj.get("pre_tokenizer")):
        if s.get("type") == "Metaspace":
            return s.get("prepend_scheme", "always") != "never" and s.get("add_prefix_space", True)
    return False


def _special_ids(vocab: Vocab, hf, tok_cfg: dict, config: dict, gen: dict) -> None:
    """bos/eos/unk/pad ids and whether llama.cpp must add BOS/EOS, from what the HF tokenizer really does."""
    def tid(name: str) -> int | None:
        text = _token_text(tok_cfg.get(name)) or getattr(hf, name, None)
        if not isinstance(text, str):
            return None
        i = hf.convert_tokens_to_ids(text)
        return i if isinstance(i, int) and 0 <= i < len(vocab.tokens) and text in (vocab.tokens[i], hf.convert_ids_to_tokens(i)) else None

    ids = {k: tid(f"{k}_token") for k in ("bos", "eos", "unk", "pad")}
    gen_eos = gen.get("eos_token_id", config.get("eos_token_id"))
    gen_eos = [gen_eos] if isinstance(gen_eos, int) else [e for e in gen_eos or [] if isinstance(e, int)]
    if ids["eos"] is None and gen_eos:
        ids["eos"] = gen_eos[0]
    others = [e for e in gen_eos if e != ids["eos"]]
    if others:
        ids["eot"] = others[0]
    if ids["bos"] is None and isinstance(config.get("bos_token_id"), int):
        ids["bos"] = config["bos_token_id"]
    probe = "Hello world"
    with_special = hf(probe, add_special_tokens=True)["input_ids"]
    plain = hf(probe, add_special_tokens=False)["input_ids"]
    start = _find(with_special, plain)
    if start < 0:
        raise UnsupportedModelError("the tokenizer's special-token template changes the text's tokens; GGUF cannot express it")
    prefix, suffix = with_special[:start], with_special[start + len(plain):]
    if len(prefix) > 1 or len(suffix) > 1:
        raise UnsupportedModelError(
            f"the tokenizer adds {len(prefix)} tokens before and {len(suffix)} after the text; llama.cpp can add one BOS and one EOS"
        )
    vocab.add_bos, vocab.add_eos = bool(prefix), bool(suffix)
    if prefix:
        ids["bos"] = prefix[0]
    if suffix:
        ids["eos"] = suffix[0]
    vocab.special_ids = {k: v for k, v in ids.items() if isinstance(v, int)}


def _find(seq: list[int], sub: list[int]) -> int:
    for i in range(len(seq) - len(sub) + 1):
        if seq[i:i + len(sub)] == sub:
            return i
    return -1


# ---------------------------------------------------------------- pre-tokenizer fingerprints

_GPT2 = "gpt2-regex"
# Regexes of Hugging Face Split pre-tokenizers, normalised, and what llama.cpp calls the same split.
_QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# fingerprint -> llama.cpp pre-tokenizer names with that split (clean_spaces differs between them)
FINGERPRINTS: dict[tuple[str, ...], tuple[str, ...]] = {
    (_GPT2,): ("gpt-2", "smollm"),
    ("digits", _GPT2): ("smollm", "starcoder"),
    ("split:qwen2",): ("qwen2", "stablelm2"),
    ("split:llama3",): ("llama-bpe",),
}
# pre-tokenizers whose llama.cpp detokenizer does not clean up spaces before punctuation
NO_CLEAN_SPACES = {"smollm", "qwen2"}


def fingerprint(tj: dict[str, Any]) -> tuple[str, ...]:
    """Reduce the normalizer and pre-tokenizer of a tokenizer.json to the split they perform."""
    norm = [s.get("type") for s in _steps(tj.get("normalizer"))]
    if any(n not in ("NFC",) for n in norm):
        return ("normalizer:" + "+".join(str(n) for n in norm),)
    out: list[str] = []
    for s in _steps(tj.get("pre_tokenizer")):
        kind = s.get("type")
        if kind == "ByteLevel":
            if s.get("add_prefix_space"):
                out.append("bytelevel-prefix")
            if s.get("use_regex", True):
                out.append(_GPT2)
        elif kind == "Digits":
            out.append("digits" if s.get("individual_digits") else "digits-grouped")
        elif kind == "Split":
            pattern = s.get("pattern") or {}
            regex = pattern.get("Regex") or re.escape(str(pattern.get("String", "")))
            known = {_QWEN2_RE: "split:qwen2", _LLAMA3_RE: "split:llama3", _GPT2_RE: _GPT2}
            name = known.get(regex)
            if name is None or s.get("invert") or s.get("behavior") not in ("Isolated", "Removed", None):
                out.append(f"split:{regex[:60]}")
            else:
                out.append(name)
        else:
            out.append(str(kind))
    return tuple(out)


def pre_candidates(tj: dict[str, Any], folder: Path) -> tuple[str, ...]:
    fp = fingerprint(tj)
    names = FINGERPRINTS.get(fp)
    if names is None:
        raise UnsupportedModelError(
            f"{folder}: the tokenizer's pre-tokenizer ({' + '.join(fp) or 'none'}) has no llama.cpp equivalent "
            "that edgekit knows; a GGUF would tokenize differently from the original"
        )
    return names


# ---------------------------------------------------------------- proving it with llama.cpp


def _hf_decode(vocab: Vocab, ids: list[int]) -> str:
    return vocab.hf.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=vocab.clean_up_spaces)


class LlamaVocab:
    """A vocabulary-only GGUF opened by llama.cpp: tokenize and detokenize as llama.cpp does."""

    def __init__(self, path: Path):
        from edgekit.exporters.gguf.quant import llama_cpp_module

        lc = llama_cpp_module()
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
