"""GGUF packages: the .gguf as it is, the settings llama.cpp needs on a phone, and a checked tokenizer.json.

llama.cpp runs on Android (NDK, CPU with NEON/dotprod/i8mm kernels) and iOS (Metal), and
reads its vocabulary and chat template from the .gguf itself, so an app that uses
``llama_tokenize`` needs nothing else. For apps that tokenize outside llama.cpp, the
package adds the Hugging Face ``tokenizer.json`` of the artifact's source folder, but only
after llama.cpp (vocabulary only, no weights) tokenized a set of probe texts exactly as
that file does; the exporter proved the same when it wrote the GGUF, this proves the
source folder still holds that tokenizer.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from edgekit.deps import llama_cpp_module
from edgekit.translate import catches, translated

PROBES = (
    "Hello, world! The capital of France is Paris.",
    "  leading spaces, tabs\tand\nnewlines\n\n",
    "Numbers 3.14159, 2024-06-01 and 1,000,000.",
    "Unicode: café, naïve, 東京, Привет, 🙂",
    "code: def f(x):\n    return x**2  # square",
)
SPECIAL_KEYS = (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id"),
                ("pad_token", "tokenizer.ggml.padding_token_id"), ("unk_token", "tokenizer.ggml.unknown_token_id"))
EOG_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")


def _quiet():
    """llama.cpp's C code prints to stderr even with verbose=False (a vocab-only context warns about n_ctx)."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        return contextlib.nullcontext()
    return suppress_stdout_stderr(disable=False)


class GgufVocab:
    """A GGUF file's vocabulary through llama.cpp (``vocab_only``: no weights are loaded)."""

    def __init__(self, path: Path):
        lc = llama_cpp_module("GGUF packages")
        with translated("llama.cpp", "vocab", path=path), _quiet():
            self._llm = lc.Llama(model_path=str(path), vocab_only=True, verbose=False)
        self.metadata: dict[str, str] = dict(self._llm.metadata)
        vocab = lc.llama_model_get_vocab(self._llm._model.model)
        ids = {self._llm.token_eos()} | {int(self.metadata[k]) for k in EOG_KEYS if k in self.metadata}
        self.eos_ids = sorted(i for i in ids if i >= 0 and lc.llama_vocab_is_eog(vocab, i)) or [self._llm.token_eos()]
        self.bos_id = self._llm.token_bos()
        self.chat_template = self.metadata.get("tokenizer.chat_template")
        self.add_bos = self.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def token_text(self, token_id: int) -> str | None:
        if token_id is None or token_id < 0:
            return None
        return self._llm.detokenize([token_id], special=True).decode("utf-8", "replace")

    def special_tokens(self) -> dict[str, str]:
        out = {}
        for name, key in SPECIAL_KEYS:
            if key in self.metadata and (text := self.token_text(int(self.metadata[key]))) is not None:
                out[name] = text
        return out

    def close(self) -> None:
        with _quiet():
            self._llm.close()


def tokenizer_mismatch(tokenizer_json: Path, vocab: GgufVocab, extra_probes: tuple[str, ...] = ()) -> str | None:
    """None when the Hugging Face tokenizer.json tokenizes every probe as llama.cpp does; else the first difference."""
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # the table knows what tokenizers raises (a bare Exception); anything else is a bug
        if not catches(exc, "tokenizers", "load"):
            raise
        return f"{tokenizer_json} is not a tokenizer file ({exc})"
    for text in (*PROBES, *extra_probes):
        hf = tok.encode(text, add_special_tokens=False).ids
        ll = vocab.tokenize(text)
        if hf != ll:
            return f"{text[:40]!r}: tokenizer.json gives {hf[:8]}..., llama.cpp {ll[:8]}..."
    return None


def llama_settings(platform: str, *, threads: int | None, context: int, mmap: bool) -> dict[str, Any]:
    """What an app passes to llama.cpp: ``llama_model_params`` and ``llama_context_params`` fields."""
    gpu = {
        "android": (0, "CPU: llama.cpp's ARM kernels; GPU backends (Vulkan, OpenCL) are optional builds"),
        "ios": (None, "keep llama_model_default_params()'s value: Metal on a device; set 0 on the simulator, "
                      "as llama.cpp's llama.swiftui example does"),
        "generic": (0, "CPU"),
    }[platform]
    return {
        "runtime": "llama.cpp",
        "model_params": {"use_mmap": mmap, "use_mlock": False, "n_gpu_layers": gpu[0]},
        "context_params": {"n_ctx": context, "n_batch": min(512, context), "n_threads": threads,
                           "n_threads_batch": threads},
        "notes": {
            "n_gpu_layers": gpu[1],
            "use_mmap": "the weights stay in the page cache (the OS can drop and re-read them) instead of app memory"
            if mmap else "weights are read into app memory",
            "n_threads": "the target's big cores; more threads than fast cores slows llama.cpp down (its threads "
                         "spin at barriers)" if threads else "null: keep llama.cpp's default",
        },
    }
