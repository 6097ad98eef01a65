"""The Model API every local backend implements, and the generation loop they share.

A backend (onnx.py, llamacpp.py) provides tokenization and one primitive,
``_forward(ids) -> logits of the last position`` that appends ``ids`` to its KV
cache. Everything else lives here once, so both backends give the same meaning
to every setting: sampling and confidence (sampling.py), stop strings,
incremental detokenization, context checks, timings and chat templates.

Thread safety: a Model serialises calls with a lock. Several threads may share
one Model; their requests run one after another (a generator from ``stream``
holds the lock until it is exhausted or closed). A thread that starts another
request while its own stream is unfinished gets a ConfigError (the two would
share one KV cache). For parallel generation load one Model per thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

import numpy as np

from edgekit.errors import ArtifactError, ConfigError, ContextOverflowError, UnsupportedModelError
from edgekit.names import Kind
from edgekit.runtimes.sampling import Sampler, distribution
from edgekit.runtimes.text import IncrementalDecoder, StopScanner

FinishReason = Literal["eos", "stop", "length", "tool_calls"]


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. Greedy when ``temperature`` is 0 (the default)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # keep generating past end-of-sequence (benchmarks that need exact counts)
    # what the answer must be: a JSON schema, json_object, a pydantic class, a regex, a Lark grammar or a choice
    # (constrain.response_format lists the shapes); compiled once here, None for free text
    response_format: Any = None
    # chat only: OpenAI's tools and tool_choice (edgekit.runtimes.tools), checked here into one ToolSet
    tools: Any = None
    tool_choice: Any = None

    def __post_init__(self):
        from edgekit.runtimes.constrain import response_format
        from edgekit.runtimes.tools import tool_set

        object.__setattr__(self, "response_format", response_format(self.response_format))
        object.__setattr__(self, "tools", tool_set(self.tools, self.tool_choice))
        if self.tools is not None:
            object.__setattr__(self, "tool_choice", self.tools.choice)
            if self.response_format is not None and self.tools.format is not None:
                raise ConfigError("response_format and tools both constrain the answer: pass one of them, or "
                                  "tool_choice='none'", param="tools")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        checks = [
            (isinstance(self.max_tokens, int) and self.max_tokens >= 1, "max_tokens must be an integer >= 1"),
            (_num(self.temperature) and self.temperature >= 0, "temperature must be a number >= 0"),
            (isinstance(self.top_k, int) and self.top_k >= 0, "top_k must be an integer >= 0 (0 disables it)"),
            (_num(self.top_p) and 0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (_num(self.repetition_penalty) and self.repetition_penalty > 0, "repetition_penalty must be > 0 (1 disables it)"),
            (all(isinstance(s, str) and s for s in self.stop), "stop must be non-empty strings"),
            (self.seed is None or isinstance(self.seed, int), "seed must be an integer"),
            (isinstance(self.ignore_eos, bool), "ignore_eos must be true or false"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"invalid generation config: {msg}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown generation setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
        return cls(**data)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


@dataclass
class TokenEvent:
    """One generated token. ``text`` is the text released with it (may be empty while
    a multi-byte character or a possible stop string is pending)."""

    index: int
    token_id: int
    text: str
    prob: float
    entropy: float
    finish_reason: FinishReason | None = None
    timings: "Timings | None" = None  # set on the last event
    constrained: bool = False  # prob and entropy are over the tokens the response format allowed (renormalised)
    parsed: Any = None  # on the last event of a constrained answer that is whole: ResponseFormat.parse of its text
    tool_calls: list[dict] | None = None  # on the last event of an answer that called tools (OpenAI's shape)


@dataclass
class Timings:
    load_s: float = 0.0
    prompt_tokens: int = 0
    prefill_s: float = 0.0
    ttft_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    total_s: float = 0.0
    token_latencies_s: list[float] = field(default_factory=list)

    @property
    def prefill_tps(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "load_s": self.load_s, "prompt_tokens": self.prompt_tokens, "prefill_s": self.prefill_s,
            "prefill_tps": self.prefill_tps, "ttft_s": self.ttft_s, "decode_tokens": self.decode_tokens,
            "decode_s": self.decode_s, "decode_tps": self.decode_tps, "total_s": self.total_s,
        }


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    probs: list[float]
    entropies: list[float]
    timings: Timings
    constrained: bool = False  # generated under a response format: probs are over the allowed tokens
    parsed: Any = None  # the answer as an object (JSON value, pydantic instance, or the matched text); None when
    # unconstrained or when the answer did not finish inside the format (finish_reason "length")
    tool_calls: list[dict] | None = None  # the calls, in OpenAI's shape, when finish_reason is "tool_calls"

    def confidence_summary(self, first_k: int | None = None) -> dict[str, float]:
        return confidence_summary(self.probs[:first_k] if first_k else self.probs, self.entropies[:first_k] if first_k else self.entropies)


def confidence_summary(probs: Sequence[float], entropies: Sequence[float]) -> dict[str, float]:
    if not len(probs):
        return {"tokens": 0, "min_prob": 0.0, "mean_prob": 0.0, "p10_prob": 0.0, "mean_entropy": 0.0}
    p = np.asarray(probs, dtype=np.float64)
    return {
        "tokens": int(p.size),
        "min_prob": float(p.min()),
        "mean_prob": float(p.mean()),
        "p10_prob": float(np.quantile(p, 0.10)),
        "mean_entropy": float(np.mean(entropies)),
    }


class Model:
    """A loaded local artifact. Use :func:`edgekit.load` to get one.

    Its generate/stream/chat/stream_chat make it a :class:`~edgekit.runtimes.tier.Tier`.
    """

    kind: Kind = "decoder"
    backend: str = ""

    def __init__(self, path: Path, manifest=None):
        self.path = Path(path)
        self.model_path = self.path  # the model file itself (an ONNX folder's model.onnx)
        self.manifest = manifest
        self.load_seconds = 0.0
        self.context_length = 0
        self.eos_token_ids: set[int] = set()
        self.chat_template: str | None = None
        self.special_tokens: dict[str, str] = {}
        self._lock = threading.RLock()
        self._busy = False

    # ---- what backends provide -------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        raise NotImplementedError

    def detokenize(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def _reset(self) -> None:
        """Forget the KV cache."""
        raise NotImplementedError

    def _forward(self, ids: Sequence[int]) -> np.ndarray:
        """Run ``ids`` after what the cache holds; return the logits of the last position."""
        raise NotImplementedError

    forward_observer: Callable[[int, float], None] | None = None
    """Called after every forward pass with (tokens fed, seconds): the profiler's instrumentation hook."""

    def forward(self, ids: Sequence[int]) -> np.ndarray:
        """Feed ``ids`` (appending to the KV cache) and return the last position's logits."""
        if self.forward_observer is None:
            return self._forward(ids)
        t0 = time.perf_counter()
        out = self._forward(ids)
        self.forward_observer(len(ids), time.perf_counter() - t0)
        return out

    def close(self) -> None:
        """Release the backend's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {self.path}>"

    # ---- public API -----------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        return collect(self.stream(prompt, config, **overrides))

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        self.require_decoder("generate")
        cfg = resolve_config(config, overrides)
        if cfg.tools is not None:
            raise ConfigError("tools are for chat: use chat() or stream_chat() (the template shows them to the model)",
                              param="tools")
        return self._stream_ids(self.tokenize(check_prompt(prompt), add_special=True), cfg)

    def generate_ids(self, ids: Sequence[int], config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        """Generate from token ids (no tokenization: exact prompt lengths for benchmarks)."""
        return collect(self.stream_ids(ids, config, **overrides))

    def stream_ids(self, ids: Sequence[int], config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        self.require_decoder("generate")
        return self._stream_ids([int(i) for i in ids], resolve_config(config, overrides))

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        return collect(self.stream_chat(messages, config, **overrides))

    def stream_chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        self.require_decoder("chat")
        cfg = resolve_config(config, overrides)
        prompt = self.render_chat(messages, tools=cfg.tools)
        return self._stream_ids(self.tokenize(prompt, add_special=False), cfg)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True, tools=None) -> str:
        """The prompt of a conversation through the model's chat template. ``tools`` (a ToolSet): rendered by the
        template when it takes them, else described in the system message; tool calls and results in the
        messages are written in the same format (edgekit.runtimes.tools)."""
        from edgekit.runtimes.chat import check_messages, render
        from edgekit.runtimes.tools import fold_messages, template_takes_tools

        if not self.chat_template:
            raise ConfigError(
                f"{self.path.name} has no chat template, so chat is not available: use generate() with a plain prompt"
            )
        msgs = check_messages(messages)
        extra = {}
        if template_takes_tools(self.chat_template):
            if tools is not None:
                extra["tools"] = [dict(t) for t in tools.tools]
        elif tools is not None or any(m["role"] == "tool" or m.get("tool_calls") for m in msgs):
            msgs = fold_messages(msgs, tools)
        return render(self.chat_template, msgs, add_generation_prompt=add_generation_prompt, **extra,
                      **self.special_tokens)

    def embed(self, texts: str | Iterable[str], batch_size: int = 32) -> np.ndarray:
        raise UnsupportedModelError(
            f"{self.path.name} is a {self.kind} ({self.backend}); embed needs an encoder artifact "
            "(export with task=feature-extraction)",
            param="task",
        )

    def classify(self, texts: str | Iterable[str], batch_size: int = 32) -> list[dict[str, Any]]:
        raise UnsupportedModelError(
            f"{self.path.name} is a {self.kind} ({self.backend}); classify needs a text-classification artifact"
        )

    # ---- the shared loop -------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self):
        """Refuse a second request from the thread that holds an unfinished stream (the lock is re-entrant)."""
        if self._busy:
            raise ConfigError(
                "this model is busy with an unfinished stream in the same thread: finish or close() that "
                "generator first, or load a second Model"
            )
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    def require_decoder(self, what: str) -> None:
        """Raise UnsupportedModelError unless this is a text-generation model (``what`` names the operation)."""
        if self.kind != "decoder":
            raise UnsupportedModelError(
                f"{self.path.name} is an {self.kind}; {what} needs a text-generation artifact "
                f"(use {'embed' if self.kind == 'encoder' else 'classify'} instead)"
            )

    def check_context(self, n_prompt: int) -> None:
        if n_prompt >= self.context_length:
            raise ContextOverflowError(
                f"the prompt is {n_prompt} tokens but the model's context is {self.context_length} tokens "
                "(and at least one must be left to generate): shorten the prompt or load with a larger context",
                prompt_tokens=n_prompt,
                context=self.context_length,
            )

    def _stream_ids(self, ids: list[int], cfg: GenerationConfig) -> Iterator[TokenEvent]:
        if not ids:
            raise ConfigError("the prompt is empty after tokenization: pass some text")
        self.check_context(len(ids))
        return self._loop(ids, cfg)

    def _loop(self, ids: list[int], cfg: GenerationConfig) -> Iterator[TokenEvent]:
        with self._lock, self._exclusive():
            t0 = time.perf_counter()
            timings = Timings(load_s=self.load_seconds, prompt_tokens=len(ids))
            sampler = Sampler(cfg.temperature, cfg.top_k, cfg.top_p, cfg.repetition_penalty, cfg.seed)
            penalise = cfg.repetition_penalty != 1.0
            seen = np.asarray(ids, dtype=np.int64) if penalise else None
            decoder = IncrementalDecoder(self.detokenize)
            stops = StopScanner(cfg.stop)
            budget = min(cfg.max_tokens, self.context_length - len(ids))
            guide = self._guide(cfg.response_format or (cfg.tools.format if cfg.tools is not None else None))
            released: list[str] = []
            self._reset()
            logits = self.forward(ids)
            timings.prefill_s = time.perf_counter() - t0
            t_prev = time.perf_counter()
            for i in range(budget):
                if guide is not None:
                    logits = guide.mask(logits)
                e, z, ent = distribution(logits)
                if z != z:  # NaN: a NaN or inf among the logits (see distribution); costs nothing more
                    raise self._corrupt(i)
                tok = sampler(logits, seen)
                prob = float(e[tok]) / z
                if guide is not None:
                    guide.advance(tok)
                now = time.perf_counter()
                if i == 0:
                    timings.ttft_s = now - t0
                else:
                    timings.token_latencies_s.append(now - t_prev)
                t_prev = now
                finish: FinishReason | None = None
                if tok in self.eos_token_ids and not cfg.ignore_eos:
                    text, finish = stops.flush(), "eos"
                else:
                    text, hit = stops.feed(decoder.push(tok))
                    if hit:
                        finish = "stop"
                    elif i == budget - 1 or (guide is not None and guide.complete):
                        text += stops.feed(decoder.flush())[0] + stops.flush()
                        finish = "eos" if guide is not None and guide.complete else "length"
                timings.total_s = time.perf_counter() - t0
                timings.decode_tokens = i
                timings.decode_s = now - t0 - timings.ttft_s
                parsed = calls = None
                if guide is not None:
                    released.append(text)
                    if finish and finish != "stop" and guide.accepting:  # a stop string cuts the answer
                        parsed = parse_answer(guide.fmt, "".join(released))
                    if cfg.tools is not None and isinstance(parsed, str):
                        from edgekit.runtimes.tools import parse_calls

                        calls = parse_calls(parsed, cfg.tools)
                        parsed, finish = (None, "tool_calls") if calls else (parsed, finish)
                yield TokenEvent(i, tok, text, prob, ent, finish, timings if finish else None, guide is not None, parsed,
                                 calls)
                if finish:
                    return
                if penalise:
                    seen = np.append(seen, tok)
                logits = self.forward([tok])


    # ---- structured output ---------------------------------------------------
    _lltok = None

    def _make_lltokenizer(self):
        """llguidance's tokenizer for this model's vocabulary (each backend builds it from what it ships)."""
        raise ConfigError(f"{self.backend} models do not support response_format yet")

    def _guide(self, fmt):
        if fmt is None:
            return None
        from edgekit.runtimes.constrain import Guide

        if self._lltok is None:
            self._lltok = self._make_lltokenizer()
        return Guide(self._lltok, fmt)

    def _corrupt(self, step: int) -> ArtifactError:
        """Damaged weights found while generating: the same blame as at load (an :class:`ArtifactError`)."""
        where = "the prompt" if step == 0 else f"generated token {step}"
        return ArtifactError(
            f"{self.model_path} is corrupt: its {self.backend} output after {where} is not a number (NaN or inf "
            "logits, e.g. from damaged weights); re-download or re-export the model"
        )


def resolve_config(config: GenerationConfig | None, overrides: dict[str, Any]) -> GenerationConfig:
    """The config of one request: ``config`` (default: the defaults) with keyword ``overrides`` applied, validated."""
    if config is None:
        return GenerationConfig.from_dict(overrides)
    if not isinstance(config, GenerationConfig):
        raise ConfigError(f"config must be a GenerationConfig, not {type(config).__name__}")
    if not overrides:
        return config
    known = {f.name for f in dataclasses.fields(GenerationConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown generation setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    return dataclasses.replace(config, **overrides)


def check_prompt(prompt) -> str:
    """A prompt is a string (every tier: local models, the router, the remote client)."""
    if not isinstance(prompt, str):
        raise ConfigError(f"prompt must be a string, not {type(prompt).__name__}")
    return prompt


def collect(events: Iterator[TokenEvent]) -> GenerationResult:
    """Drain a token stream into a :class:`GenerationResult`."""
    parts, ids, probs, ents = [], [], [], []
    finish: FinishReason = "length"
    timings = Timings()
    constrained, parsed, calls = False, None, None
    for ev in events:
        constrained, parsed, calls = ev.constrained, ev.parsed, ev.tool_calls
        parts.append(ev.text)
        ids.append(ev.token_id)
        probs.append(ev.prob)
        ents.append(ev.entropy)
        if ev.finish_reason:
            finish = ev.finish_reason
            timings = ev.timings or timings
    return GenerationResult("".join(parts), ids, finish, probs, ents, timings, constrained, parsed, calls)


def parse_answer(fmt, text: str):
    """``fmt.parse(text)``, None when the text does not parse (a stop string cut it, or a pydantic validator
    llguidance cannot enforce refused it)."""
    try:
        return fmt.parse(text)
    except ValueError:
        return None
