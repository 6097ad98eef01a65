"""llama-cpp-python backend for GGUF artifacts (or a bare .gguf file).

Generation runs through ``Llama.eval`` and reads only the last position's logits
(``llama_get_logits_ith(ctx, -1)``, a view, no copy), so the per-token
confidence costs one softmax over the vocabulary and the context never needs
``logits_all=True``, which slows decoding several times. Sampling is edgekit's
own (sampling.py), so settings mean the same as on the ONNX backend.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edgekit.deps import llama_cpp_module
from edgekit.errors import ArtifactError, ConfigError, is_int
from edgekit.gguf_header import kv_bytes_per_position, meta_count, read_gguf_header
from edgekit.hostmem import meminfo
from edgekit.manifest import Manifest
from edgekit.runtimes.base import Model
from edgekit.runtimes.threads import available_cpus, check_threads
from edgekit.translate import translate, translated

DEFAULT_CONTEXT = 4096
GGUF_MAGIC = b"GGUF"


def default_threads() -> int:
    """llama-cpp-python's own default: half the logical cores (about the physical ones). llama.cpp's
    threads spin at barriers, so more threads than free cores slows decoding down many times."""
    return max(1, available_cpus() // 2)


def check_gguf_file(path: Path) -> None:
    """Refuse a file that is not GGUF before llama.cpp sees it."""
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: pass an artifact folder or a .gguf file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ArtifactError(f"{path} is not a GGUF file (bad magic {head[:4]!r}): re-download or re-export it")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_context_memory(path: Path, n_ctx: int) -> None:
    """Refuse a context whose KV cache alone exceeds the memory this host has available, before llama.cpp
    spends seconds trying to allocate it and fails in a way that reads like a damaged file.

    The KV cache is f16 for every layer and position (sliding-window models keep less: not checked here,
    so that no context that would fit is refused). Weights are not counted: llama.cpp maps them from the
    file, and the kernel can page them out.
    """
    meta, _ = read_gguf_header(path, tensors=False)
    arch = str(meta.get("general.architecture") or "llama")
    per = kv_bytes_per_position(meta)
    if per is None or meta.get(f"{arch}.attention.sliding_window") is not None:
        return
    _total, avail = meminfo()
    if avail is None or per * n_ctx <= avail:
        return
    trained = meta_count(meta, arch, "context_length")
    fits = avail // per
    raise ConfigError(
        f"context={n_ctx} needs {_gb(per * n_ctx)} of KV cache ({per // 1024} KB a token) but this machine has "
        f"{_gb(avail)} available: pass a context of at most about {fits} tokens"
        + (f" (the model was trained on {trained})" if trained else ""), param="context")


class LlamaCppModel(Model):
    """A GGUF model in llama.cpp. ``logits_all=True`` only for the quality gate (``sequence_logits``)."""

    backend = "llama.cpp"
    kind = "decoder"

    def __init__(self, path: Path, *, threads=None, context=None, manifest: Manifest | None = None, logits_all=False):
        super().__init__(path, manifest)
        t0 = time.perf_counter()
        lc = llama_cpp_module("GGUF models")
        check_gguf_file(self.path)
        threads = check_threads(threads)
        if context is not None and not is_int(context, 2):
            raise ConfigError(f"context must be an integer >= 2, got {context!r}")
        n_threads = threads or default_threads()
        check_context_memory(self.path, context or DEFAULT_CONTEXT)
        self.llm = self._open(lc, n_threads, context or DEFAULT_CONTEXT, logits_all)
        trained = self.trained_context = self.llm._model.n_ctx_train()
        if context is None and 0 < trained < self.llm.n_ctx():  # rare: a model trained on fewer tokens
            self.llm.close()
            self.llm = self._open(lc, n_threads, trained, logits_all)
        # llama.cpp pads small contexts up (to 256), but llama-cpp-python's token buffer holds only what was asked
        self.context_length = min(self.llm.n_ctx(), len(self.llm.input_ids))
        meta = self.llm.metadata
        self.n_vocab = self.llm.n_vocab()
        self._ctx = self.llm._ctx.ctx
        self._get_logits_ith = lc.llama_get_logits_ith
        vocab = lc.llama_model_get_vocab(self.llm._model.model)
        ids = {self.llm.token_eos()}
        for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
            if key in meta:
                ids.add(int(meta[key]))
        self.eos_token_ids = {i for i in ids if i >= 0 and lc.llama_vocab_is_eog(vocab, i)} or {self.llm.token_eos()}
        self.chat_template = meta.get("tokenizer.chat_template")
        self.special_tokens = {}
        for name, key in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
            if key in meta:
                self.special_tokens[name] = self.llm.detokenize([int(meta[key])], special=True).decode("utf-8", "replace")
        self.metadata = dict(meta)
        self.load_seconds = time.perf_counter() - t0

    def _open(self, lc, n_threads: int, n_ctx: int, logits_all: bool):
        with translated("llama.cpp", "load", path=self.path, context=n_ctx):  # a context it cannot make: no bad file
            return lc.Llama(
                model_path=str(self.path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                n_batch=512, logits_all=logits_all, verbose=False,
            )

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=True)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize(list(ids)).decode("utf-8", errors="replace")

    def _reset(self) -> None:
        self.llm.reset()

    def _make_lltokenizer(self):
        from edgekit.runtimes.constrain import tokenizer_from_llama

        return tokenizer_from_llama(self.llm, self.n_vocab, sorted(self.eos_token_ids))

    def _forward(self, ids: Sequence[int]) -> np.ndarray:
        try:  # once per token: a plain try costs nothing when nothing is raised
            self.llm.eval(ids)
        except Exception as exc:
            raise translate(exc, "llama.cpp", "eval", tokens=len(ids)) from exc
        ptr = self._get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def sequence_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of ``ids`` (needs ``logits_all=True``): shape (len(ids), vocab)."""
        if not self.llm._logits_all:
            raise ConfigError("sequence_logits needs a model opened with logits_all=True")
        with self._lock:
            self.llm.reset()
            with translated("llama.cpp", "eval", tokens=len(ids)):
                self.llm.eval(list(ids))
            out = np.array(self.llm.scores[: len(ids)], dtype=np.float32)
            self.llm.reset()
            return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None


def open_gguf(path: Path, *, threads=None, context=None, manifest=None, logits_all=False) -> LlamaCppModel:
    return LlamaCppModel(Path(path), threads=threads, context=context, manifest=manifest, logits_all=logits_all)
