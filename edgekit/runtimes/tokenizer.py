"""Hugging Face tokenizers (``tokenizer.json``) without transformers.

Reads ``tokenizer.json`` with the ``tokenizers`` library and the few settings
that live beside it in ``tokenizer_config.json`` (special tokens, chat template).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgekit.errors import ArtifactError, MissingDependencyError
from edgekit.translate import translated


def _token_str(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_chat_template(folder: Path, tok_config: dict[str, Any]) -> str | None:
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    return template or None


class HFTokenizer:
    def __init__(self, folder: Path, *, max_length: int | None = None):
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # core dependency
            raise MissingDependencyError("the tokenizers package (a core dependency)", None) from exc
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ArtifactError(f"{folder} has no tokenizer.json: re-export the artifact")
        with translated("tokenizers", "load", path=path):
            self._tok = Tokenizer.from_file(str(path))
        cfg_path = folder / "tokenizer_config.json"
        try:
            self.config: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        except ValueError as exc:
            raise ArtifactError(f"{cfg_path} is not valid JSON: re-export the artifact") from exc
        self.chat_template = read_chat_template(folder, self.config)
        self.special_tokens = {
            k: v for k in ("bos_token", "eos_token", "pad_token", "unk_token") if (v := _token_str(self.config.get(k)))
        }
        self._tok.no_padding()
        self._tok.no_truncation()
        self.max_length = max_length
        pad = self.special_tokens.get("pad_token")
        self.pad_id = self._tok.token_to_id(pad) if pad else None
        if self.pad_id is None:
            self.pad_id = 0

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def to_json(self) -> str:
        """The tokenizer as tokenizer.json text (what llguidance builds its token table from)."""
        return self._tok.to_str()

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str, *, add_special: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special).ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special)

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the longest text and truncated to ``max_length``."""
        tok = self._tok
        if self.max_length:
            tok.enable_truncation(self.max_length)
        tok.enable_padding(pad_id=self.pad_id, pad_token=tok.id_to_token(self.pad_id) or "[PAD]")
        try:
            encs = tok.encode_batch(list(texts))
        finally:
            tok.no_padding()
            tok.no_truncation()
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask
