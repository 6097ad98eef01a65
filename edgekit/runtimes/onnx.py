"""onnxruntime backend: decoders with a KV cache, encoders, classifiers. No torch.

Decoders have inputs ``input_ids``, ``attention_mask``, ``position_ids`` (when
present) and ``past_key_values.N.key/value``; outputs ``logits`` and
``present.N.key/value``. The loop runs through an ``IOBinding`` and one of two
cache disciplines (:mod:`edgekit.runtimes.onnx_kv`): optimum's graphs grow the
cache each step (``present`` bound as the next ``past`` as onnxruntime allocated
it); edgekit's fused graphs read and write one buffer per layer sized to the
context, in place, bound to the IOBinding once, with the logits written into an
array bound as their output, so a step binds only its inputs and that array.
Either way the cache never passes through numpy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edgekit.errors import ArtifactError, ConfigError, MissingDependencyError, is_int
from edgekit.manifest import Manifest, ModelInfo
from edgekit.pooling import pool
from edgekit.runtimes.base import Model
from edgekit.runtimes.onnx_kv import GrowingCache, SharedBuffer, is_fused
from edgekit.runtimes.threads import check_threads
from edgekit.runtimes.tokenizer import HFTokenizer
from edgekit.translate import translate, translated

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", None) from exc
    return ort


def make_session(path: Path, threads: int | None = None, *, mem_pattern: bool = True):
    """An onnxruntime CPU session; a file onnxruntime cannot read is an :class:`ArtifactError`.

    ``mem_pattern=False`` turns off onnxruntime's memory pattern (planned arenas per set of input shapes),
    which buys nothing where the shapes change every call, as a decoder's do.
    """
    ort = _ort()
    threads = check_threads(threads)
    opts = ort.SessionOptions()
    opts.enable_mem_pattern = mem_pattern
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist: pass an artifact folder or an .onnx file")
    with translated("onnxruntime", "load", path=path):
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_tokenizer_size(tokenizer: HFTokenizer, info: ModelInfo, folder: Path) -> None:
    """Refuse a tokenizer.json whose size differs from the one the artifact was exported with (the manifest's
    ``model.tokenizer_size``). A tokenizer cut short still loads and still tokenizes the gate's prompts as before,
    so no logits comparison sees it, but its ids no longer cover the model's vocabulary."""
    n = tokenizer.vocab_size
    if info.tokenizer_size is not None and n != info.tokenizer_size:
        raise ArtifactError(
            f"{folder}: tokenizer.json has {n} tokens but the model was exported with {info.tokenizer_size} "
            "(truncated or replaced tokenizer); re-export the artifact"
        )


class OnnxModel(Model):
    backend = "onnx"
    mem_pattern = True  # onnxruntime's memory pattern (see make_session)

    def __init__(self, folder: Path, model_file: str, info: ModelInfo, *, threads=None, manifest: Manifest | None = None,
                 tokenizer: HFTokenizer | None = None):
        super().__init__(folder, manifest)
        t0 = time.perf_counter()
        self.info = info
        self.model_path = folder / model_file
        self.session = make_session(self.model_path, threads, mem_pattern=self.mem_pattern)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # ``tokenizer``: the folder's, built already (an exporter gating its staged artifact)
        self.tokenizer = tokenizer or HFTokenizer(folder, max_length=info.context_length if self.kind != "decoder" else None)
        check_tokenizer_size(self.tokenizer, info, folder)
        self.chat_template = self.tokenizer.chat_template
        self.special_tokens = dict(self.tokenizer.special_tokens)
        self.context_length = info.context_length or 2048
        self._setup()
        self.load_seconds = time.perf_counter() - t0

    def _setup(self) -> None:
        pass

    def close(self) -> None:
        self.session = None

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special=add_special)

    def _finite(self, values: np.ndarray, what: str) -> np.ndarray:
        """``values``, or an ArtifactError naming the model file when any is NaN or inf (damaged weights)."""
        if not np.isfinite(values).all():
            raise ArtifactError(
                f"{self.model_path} is corrupt: its {what} contain NaN or inf values (e.g. from damaged weights); "
                "re-download or re-export the model"
            )
        return values

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids)

    def _make_lltokenizer(self):
        from edgekit.runtimes.constrain import tokenizer_from_json

        return tokenizer_from_json(self.tokenizer.to_json(), sorted(self.eos_token_ids))

    def _encoder_feeds(self, texts: list[str]) -> tuple[dict, np.ndarray]:
        ids, mask = self.tokenizer.encode_batch(texts)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return {k: v for k, v in feeds.items() if k in self.input_names}, mask

    def _batches(self, texts, batch_size: int):
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ConfigError("texts must be a non-empty list of strings")
        if not is_int(batch_size, 1):
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        for i in range(0, len(texts), batch_size):
            yield texts[i : i + batch_size]


class OnnxEncoder(OnnxModel):
    """Sentence embeddings: pooling and normalisation as the model was trained (manifest.model)."""

    kind = "encoder"

    def _setup(self) -> None:
        self._output = "sentence_embedding" if "sentence_embedding" in self.output_names else self.output_names[0]

    def embed(self, texts: str | Iterable[str], batch_size: int = 32) -> np.ndarray:
        out = []
        with self._lock:
            for batch in self._batches(texts, batch_size):
                feeds, mask = self._encoder_feeds(batch)
                with translated("onnxruntime", "run"):
                    (hidden,) = self.session.run([self._output], feeds)
                out.append(self._finite(pool(hidden, mask, self.info.pooling or "mean", bool(self.info.normalize)),
                                        "embeddings"))
        return np.concatenate(out, axis=0)


class OnnxClassifier(OnnxModel):
    kind = "classifier"

    def probabilities(self, texts: str | Iterable[str], batch_size: int = 32) -> np.ndarray:
        out = []
        with self._lock:
            for batch in self._batches(texts, batch_size):
                feeds, _ = self._encoder_feeds(batch)
                with translated("onnxruntime", "run"):
                    (logits,) = self.session.run(["logits"], feeds)
                x = self._finite(logits, "logits").astype(np.float64)
                x = np.exp(x - x.max(axis=1, keepdims=True))
                out.append(x / x.sum(axis=1, keepdims=True))
        return np.concatenate(out, axis=0)

    def classify(self, texts: str | Iterable[str], batch_size: int = 32) -> list[dict]:
        probs = self.probabilities(texts, batch_size)
        labels = self.info.labels or [f"LABEL_{i}" for i in range(probs.shape[1])]
        return [{"label": labels[int(p.argmax())], "score": float(p.max())} for p in probs]


class OnnxDecoder(OnnxModel):
    kind = "decoder"
    # no memory pattern: the shapes change every step, and the patterns kept per shape only cost memory. Measured
    # (SmolLM2, 257-token prompt + 128 tokens, peak RSS): fused int4 400 -> 381 MB, int8 422 -> 413 MB, optimum
    # int8 612 -> 612 MB; decode and prefill speed unchanged within the noise of a shared 2-core machine.
    mem_pattern = False

    def _setup(self) -> None:
        self.eos_token_ids = set(self.info.eos_token_ids)
        self.past_names = [n for n in self.input_names if n.startswith("past_key_values.")]
        self.present_names = [n for n in self.output_names if n.startswith("present")]
        if "logits" not in self.output_names or len(self.past_names) != len(self.present_names) or not self.past_names:
            raise ArtifactError(
                f"{self.model_path} is not a decoder with a KV cache (needs logits, past_key_values.* and present.*): "
                "export it with task=text-generation",
                param="task",
            )
        meta = {i.name: i for i in self.session.get_inputs()}
        first = meta[self.past_names[0]]
        past_dtype = _ORT_TYPES.get(first.type, np.float32)
        kv = first.shape[1] if isinstance(first.shape[1], int) else (self.info.n_kv_heads or 1)
        hd = first.shape[3] if isinstance(first.shape[3], int) else (self.info.head_dim or 1)
        self._has_mask = "attention_mask" in self.input_names
        self._has_pos = "position_ids" in self.input_names
        logits = next(o for o in self.session.get_outputs() if o.name == "logits")
        self._logits_dtype = _ORT_TYPES.get(logits.type, np.float32)
        vocab = logits.shape[-1] if logits.shape else None
        self._vocab = vocab if isinstance(vocab, int) and vocab > 0 else None  # else learnt from the first run
        self.fused = is_fused(self.session)
        if self.fused:  # edgekit's fused graph: present.N.* written in place into the past_key_values.N.* buffer
            presents = [n.replace("past_key_values.", "present.", 1) for n in self.past_names]
            self._cache = SharedBuffer(_ort(), self.past_names, presents, (1, kv, 0, hd), past_dtype)
        else:
            self._cache = GrowingCache(_ort(), self.past_names, self.present_names, (1, kv, 0, hd), past_dtype)
        self._binding = self.session.io_binding()
        self._mask = np.ones((1, 0), dtype=np.int64)
        self._reset()

    def _reset(self) -> None:
        self._cache.reset()
        self._n_past = 0

    def _feeds(self, ids: Sequence[int], n: int, t: int) -> dict[str, np.ndarray]:
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64)}
        if self._has_mask:
            feeds["attention_mask"] = np.ones((1, n + t), dtype=np.int64)
        if self._has_pos:
            feeds["position_ids"] = np.arange(n, n + t, dtype=np.int64)[None, :]
        return feeds

    def _run(self, ids: Sequence[int]) -> np.ndarray:
        """Append ``ids`` to the cache; the logits of their positions, shape (1, len(ids), vocab)."""
        return self._run_shared(ids) if self.fused else self._run_growing(ids)

    def _run_growing(self, ids: Sequence[int]) -> np.ndarray:
        n, t = self._n_past, len(ids)
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for name, arr in self._feeds(ids, n, t).items():
            b.bind_cpu_input(name, arr)
        b.bind_output("logits", "cpu")
        self._cache.bind(b, n, t)
        self._run_binding()
        outs = b.get_outputs()
        self._cache.update(outs[1:])
        self._n_past = n + t
        return outs[0].numpy()

    def _run_shared(self, ids: Sequence[int]) -> np.ndarray:
        """One step on the shared KV buffer, with per-step work kept to the inputs and the logits.

        The KV buffers stay bound between steps (the binding is never cleared; :class:`SharedBuffer` binds
        them again only when they change), the attention mask is a view of a row of ones sized to the
        buffer, and the logits are written straight into a numpy array of their shape bound as the output,
        so no output is fetched or wrapped (``get_outputs()`` wraps all 2 x n_layers + 1 outputs: ~150 us).
        Measured on SmolLM2 int4 (30 layers, 2 threads), the step's time outside onnxruntime's run: ~440 -> ~100 us
        (clearing and binding every output and reading them back through ``get_outputs()`` cost the rest).
        """
        n, t = self._n_past, len(ids)
        b, cache = self._binding, self._cache
        if cache.capacity != self.context_length:
            # the first run, or a new context: new buffers, bound afresh (clearing the binding first lets go
            # of buffers of another capacity before the new ones are made)
            b.clear_binding_inputs()
            b.clear_binding_outputs()
            b.bind_output("logits", "cpu")  # output 0, read back only while the vocabulary size is unknown
            cache.forget_binding()
            cache.reserve(self.context_length)
            self._mask = np.ones((1, cache.capacity), dtype=np.int64)
        cache.bind(b, n, t)  # refuses positions past the buffer (ContextOverflowError) before any input is sliced
        b.bind_cpu_input("input_ids", np.asarray([ids], dtype=np.int64))
        if self._has_mask:
            b.bind_cpu_input("attention_mask", self._mask[:, : n + t])
        if self._has_pos:
            b.bind_cpu_input("position_ids", np.arange(n, n + t, dtype=np.int64)[None, :])
        logits = None
        if self._vocab is not None:
            logits = np.empty((1, t, self._vocab), dtype=self._logits_dtype)
            b.bind_ortvalue_output("logits", _ort().OrtValue.ortvalue_from_numpy(logits))
        else:
            b.bind_output("logits", "cpu")
        self._run_binding()
        if logits is None:
            logits = b.get_outputs()[0].numpy()
            self._vocab = int(logits.shape[-1])
        self._n_past = n + t
        return logits

    def _run_binding(self) -> None:
        try:  # once per token: a plain try costs nothing when nothing is raised, a context manager ~1 us
            self.session.run_with_iobinding(self._binding)
        except Exception as exc:
            raise translate(exc, "onnxruntime", "run") from exc

    def _forward(self, ids: Sequence[int]) -> np.ndarray:
        return self._run(ids)[0, -1]

    def sequence_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits for every position of ``ids`` from an empty cache: shape (len(ids), vocab)."""
        with self._lock:
            self._reset()
            out = self._run(ids)[0]
            self._reset()
            return out

    def close(self) -> None:
        self._cache.close()
        self._binding = None
        super().close()


_KINDS = {"text-generation": OnnxDecoder, "feature-extraction": OnnxEncoder, "text-classification": OnnxClassifier}


def open_onnx(folder: Path, model_file: str, task: str, info: ModelInfo, *, threads=None, context=None, manifest=None,
              tokenizer=None) -> OnnxModel:
    model = _KINDS[task](folder, model_file, info, threads=threads, manifest=manifest, tokenizer=tokenizer)
    if context is not None:
        if not is_int(context, 2):
            raise ConfigError(f"context must be an integer >= 2, got {context!r}")
        model.context_length = min(context, info.context_length or context)
    return model
