"""Hugging Face tokenizer -> GGUF vocabulary (``tokenizer.ggml.*`` and the chat template).

:func:`read_vocab` reads a model folder's tokenizer (the ``tokenizers`` library
alone when ``tokenizer.json`` says everything, else transformers' fast
tokenizer) into a :class:`Vocab` padded to the embedding's rows. What the files
cannot settle is left as candidate settings: the llama.cpp pre-tokenizer names
come from :mod:`edgekit.exporters.gguf.pretokenizer`, and
:mod:`edgekit.exporters.gguf.tokenizer_check` proves which candidate llama.cpp
reproduces exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import MissingDependencyError, UnsupportedModelError
from edgekit.exporters.gguf.pretokenizer import has_step, pre_candidates, spm_adds_prefix
from edgekit.translate import translated


# Token types, as llama.cpp reads them (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


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
        with translated("tokenizers", "source", path=folder / "tokenizer.json"):
            return _TokenizersTokenizer(folder / "tokenizer.json", tok_cfg)
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("transformers (to read the tokenizer)", "export") from exc
    with translated("transformers", "tokenizer", folder=folder,
                    need="GGUF export needs tokenizer.json or tokenizer.model"):
        tok = AutoTokenizer.from_pretrained(str(folder), use_fast=True, local_files_only=True)
    if not getattr(tok, "is_fast", False):
        raise UnsupportedModelError(f"{folder}: the tokenizer has no fast (tokenizer.json) form, which GGUF export needs")
    return tok


def check_unique(vocab: Vocab, folder: Path) -> None:
    """Refuse a vocabulary with two tokens of the same bytes: llama.cpp aborts (SIGABRT) on loading it."""
    from edgekit.gguf_header import duplicate_tokens

    dups = duplicate_tokens([t.encode("utf-8", "surrogatepass") for t in vocab.tokens])
    if dups:
        token, first, later = dups[0]
        raise UnsupportedModelError(
            f"{folder}: the tokenizer has {len(dups)} duplicate token(s) ({token.decode('utf-8', 'replace')!r} is token {first} and token "
            f"{later}), which llama.cpp cannot load: give each added token text no other token has")


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
    if has_step(tj.get("pre_tokenizer"), "ByteLevel") or has_step(tj.get("decoder"), "ByteLevel"):
        vocab = _bpe_vocab(tj, n_rows, folder)
    elif model.get("byte_fallback") or (folder / "tokenizer.model").is_file():
        vocab = _spm_vocab(tj, n_rows, folder)
    else:
        raise UnsupportedModelError(f"{folder}: a BPE tokenizer that is neither byte-level nor SentencePiece-style")
    check_unique(vocab, folder)
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
    prefix = spm_adds_prefix(tj)
    vocab = Vocab(model="llama", tokens=tokens, types=types, scores=scores)
    vocab.candidates = [{"add_space_prefix": prefix}, {"add_space_prefix": not prefix}]
    return vocab


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
