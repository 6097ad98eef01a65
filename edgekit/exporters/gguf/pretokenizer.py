"""Which llama.cpp pre-tokenizer splits text like a Hugging Face tokenizer.

llama.cpp does not run the Hugging Face tokenizer: it re-implements a fixed set
of pre-tokenizers (regex splits) chosen by the ``tokenizer.ggml.pre`` name, on top
of the vocabulary and merges stored in the GGUF. llama.cpp's converter picks
that name from a table of hashes of known models' tokenizations; a retrained
vocabulary (or any model not in the table) gets no name at all.

edgekit reduces ``tokenizer.json`` to a structural fingerprint instead
(normalizer, pre-tokenizer steps and their regexes) and names the llama.cpp
pre-tokenizers whose regexes do the same split: the candidates that
:mod:`edgekit.exporters.gguf.tokenizer_check` then proves against llama.cpp.
For SentencePiece vocabularies the open question is only whether a space is
prepended (:func:`spm_adds_prefix`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgekit.errors import UnsupportedModelError


def steps(node: Any) -> list[dict[str, Any]]:
    """The steps of a tokenizer.json pipeline node (normalizer, pre-tokenizer, decoder...), Sequences flattened."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        out = []
        for key in ("pretokenizers", "normalizers", "decoders", "processors"):
            for child in node.get(key) or []:
                out += steps(child)
        return out
    return [node]


def has_step(node: Any, kind: str) -> bool:
    """Whether the pipeline node has a step of type ``kind``."""
    return any(s.get("type") == kind for s in steps(node))


def spm_adds_prefix(tj: dict[str, Any]) -> bool:
    """Whether a SentencePiece-style tokenizer.json prepends a space (llama.cpp's ``add_space_prefix``)."""
    for s in steps(tj.get("normalizer")):
        if s.get("type") == "Prepend":
            return True
    for s in steps(tj.get("pre_tokenizer")):
        if s.get("type") == "Metaspace":
            return s.get("prepend_scheme", "always") != "never" and s.get("add_prefix_space", True)
    return False


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
    norm = [s.get("type") for s in steps(tj.get("normalizer"))]
    if any(n not in ("NFC",) for n in norm):
        return ("normalizer:" + "+".join(str(n) for n in norm),)
    out: list[str] = []
    for s in steps(tj.get("pre_tokenizer")):
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
    """The llama.cpp pre-tokenizer names that split like ``tj``, or :class:`UnsupportedModelError`."""
    fp = fingerprint(tj)
    names = FINGERPRINTS.get(fp)
    if names is None:
        raise UnsupportedModelError(
            f"{folder}: the tokenizer's pre-tokenizer ({' + '.join(fp) or 'none'}) has no llama.cpp equivalent "
            "that edgekit knows; a GGUF would tokenize differently from the original"
        )
    return names
