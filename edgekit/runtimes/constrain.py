"""Structured output: a grammar (JSON schema, regex, Lark, a choice) held by llguidance, applied as a token mask
to the numpy logits of the shared generation loop, so both backends honour it the same way.

* :func:`response_format` turns what a caller passes (OpenAI's ``{"type": "json_schema", ...}`` and
  ``{"type": "json_object"}``, a pydantic model class, ``{"type": "regex", "pattern": ...}``,
  ``{"type": "lark", "grammar": ...}`` (Lark, or llama.cpp's GBNF), ``{"type": "choice", "choices": [...]}``) into one
  :class:`ResponseFormat`, compiled and checked once: the same format again costs a dictionary lookup.
* :class:`Guide` follows one answer: before each token it masks every token the grammar does not allow
  (``-inf``), after it the sampled token advances the grammar. The loop's softmax then runs over the allowed
  tokens only, so a constrained answer's per-token confidence is renormalised over them
  (``GenerationResult.constrained`` says so).
* The tokenizer llguidance needs is built from what the artifact ships: tokenizer.json for ONNX, the
  vocabulary inside the GGUF for llama.cpp (a bare .gguf works too); about 0.4 s once per loaded model.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import ConfigError, MissingDependencyError

TYPES = ("text", "json_object", "json_schema", "regex", "lark", "choice")
_FORMS = ("OpenAI's {'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}} or {'type': 'json_object'}, "
          "a pydantic model class, {'type': 'regex', 'pattern': ...}, {'type': 'lark', 'grammar': ...} or "
          "{'type': 'choice', 'choices': [...]}")


def _llguidance():
    try:
        import llguidance
    except ImportError as exc:
        raise MissingDependencyError("structured output (the llguidance package)", "structured") from exc
    return llguidance


@dataclass(frozen=True, eq=False)
class ResponseFormat:
    """One compiled output constraint. ``grammar`` is llguidance's; ``schema`` the JSON schema an answer
    validates against (json types); ``model`` the pydantic class the answer is parsed into; ``openai`` the
    ``response_format`` to send an OpenAI-compatible remote (None where OpenAI's API has no such format)."""

    type: str
    grammar: str
    schema: dict | None = None
    name: str | None = None
    model: Any = None
    openai: dict | None = None

    def parse(self, text: str) -> Any:
        """The answer as a program reads it: the JSON value (a ``model`` instance for a pydantic class), or the
        text itself for regex, Lark and choice. Raises ValueError when ``text`` does not parse."""
        if self.type not in ("json_object", "json_schema"):
            return text
        if self.model is not None:
            return self.model.model_validate_json(text)
        return json.loads(text)


# compiled formats by their spec, least recently used first: bounded, since a long-running `serve` meets as many
# schemas as its clients send
_CACHE: OrderedDict[str, ResponseFormat] = OrderedDict()
_CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()


def response_format(spec: Any) -> ResponseFormat | None:
    """``spec`` as a compiled :class:`ResponseFormat` (None for no constraint: ``None`` or ``{"type": "text"}``).
    Raises ConfigError naming what is wrong with it."""
    if spec is None or isinstance(spec, ResponseFormat):
        return spec
    model = None
    if isinstance(spec, type) and hasattr(spec, "model_json_schema"):
        model = spec
        spec = {"type": "json_schema", "json_schema": {"name": spec.__name__, "strict": True,
                                                       "schema": _closed(spec.model_json_schema())}}
    elif isinstance(spec, re.Pattern):
        spec = {"type": "regex", "pattern": spec.pattern}
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        got = spec.get("type") if isinstance(spec, dict) else type(spec).__name__
        raise ConfigError(f"response_format {got!r} is not a format edgekit knows: pass {_FORMS}",
                          param="response_format")
    if spec["type"] == "text":
        return None
    key = json.dumps(spec, sort_keys=True, default=str) + (f"|{model.__module__}.{model.__qualname__}" if model else "")
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    fmt = _compile(spec, model)
    with _CACHE_LOCK:
        _CACHE[key] = fmt
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return fmt


def _closed(schema):
    """A pydantic class's schema with ``additionalProperties: false`` on every object that does not say otherwise,
    as OpenAI's client makes it for strict mode: the answer ends after the class's fields instead of inventing
    more (a class that allows extra fields says so with ``extra="allow"``, which sets the key)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _field(spec: dict, name: str, kind: type, what: str):
    value = spec.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise ConfigError(f"response_format of type {spec['type']!r} needs {name!r}: {what}", param="response_format")
    return value


def _compile(spec: dict, model) -> ResponseFormat:
    try:
        return _compile_checked(spec, model)
    except (ValueError, RuntimeError, TypeError) as exc:  # llguidance's own parsers (GBNF to Lark, regex, JSON)
        raise ConfigError(f"response_format {spec['type']} cannot be compiled: {_first_line([exc])}",
                          param="response_format") from exc


def _compile_checked(spec: dict, model) -> ResponseFormat:
    llg = _llguidance()
    kind = spec["type"]
    schema = name = openai = None
    if kind == "json_object":
        schema, openai = {"type": "object"}, {"type": "json_object"}
        grammar = llg.grammar_from("json_schema", json.dumps(schema))
    elif kind == "json_schema":
        inner = _field(spec, "json_schema", dict, "an object with 'name' and 'schema' (OpenAI's shape)")
        schema = inner.get("schema", {})
        if not isinstance(schema, dict):
            raise ConfigError("response_format json_schema.schema must be a JSON schema object",
                              param="response_format")
        name, openai = inner.get("name"), {"type": "json_schema", "json_schema": inner}
        grammar = llg.grammar_from("json_schema", json.dumps(schema))
    elif kind == "regex":
        grammar = llg.grammar_from("regex", _field(spec, "pattern", str, "a regular expression"))
    elif kind == "lark":
        text = _field(spec, "grammar", str, "a Lark grammar (llguidance's syntax) or a GBNF grammar (llama.cpp's)")
        grammar = llg.grammar_from("grammar", text)  # Lark, or GBNF turned into Lark
    else:
        choices = _field(spec, "choices", list, "a list of strings")
        if not choices or not all(isinstance(c, str) and c for c in choices):
            raise ConfigError("response_format of type 'choice' needs 'choices': a non-empty list of non-empty "
                              "strings", param="response_format")
        grammar = llg.grammar_from("choice", json.dumps(choices))
    failed, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise ConfigError(f"response_format {kind} cannot be compiled: {_first_line(messages)}",
                          param="response_format")
    return ResponseFormat(kind, grammar, schema, name, model, openai)


def _first_line(messages: list[str]) -> str:
    """llguidance's first message on one line (its messages quote the grammar over several)."""
    text = " ".join(str(messages[0]).split()) if messages else "llguidance rejected it"
    return text if len(text) <= 240 else text[:237] + "..."


class Guide:
    """One constrained answer: the mask before each token, the grammar's step after it."""

    def __init__(self, tokenizer, fmt: ResponseFormat):
        llg = _llguidance()
        self.fmt = fmt
        self.matcher = llg.LLMatcher(tokenizer, fmt.grammar)
        if self.matcher.is_error():
            raise ConfigError(f"response_format {fmt.type} cannot be used: {self.matcher.get_error()}",
                              param="response_format")
        self.n = tokenizer.vocab_size
        self.words = np.zeros((self.n + 31) // 32, dtype=np.int32)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """A copy of ``logits`` with every token the grammar forbids next at -inf."""
        self.matcher.unsafe_compute_mask_ptr(self.words.ctypes.data, self.words.nbytes)
        allowed = np.unpackbits(self.words.view(np.uint8), bitorder="little").view(bool)
        n = logits.shape[0]
        out = np.full(n, -np.inf, dtype=np.float32)
        k = min(n, self.n)
        keep = allowed[:k]
        out[:k][keep] = logits[:k][keep]
        return out

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise ConfigError(f"response_format: token {token} broke the grammar ({self.matcher.get_error()})",
                              param="response_format")

    @property
    def complete(self) -> bool:
        """Nothing but end-of-sequence may follow: the answer is whole."""
        return self.matcher.is_stopped()

    @property
    def accepting(self) -> bool:
        return self.matcher.is_accepting()


def tokenizer_from_json(text: str, eos: list[int]):
    """llguidance's tokenizer from a tokenizer.json's text (the ONNX backend)."""
    return _llguidance().LLTokenizer(text, eos_token=eos)


def tokenizer_from_llama(llm, n_vocab: int, eos: list[int]):
    """llguidance's tokenizer from the vocabulary inside a loaded GGUF (llama-cpp-python)."""
    _llguidance()
    import llama_cpp
    from llguidance.llamacpp import lltokenizer_from_vocab

    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    return lltokenizer_from_vocab(vocab, n_vocab=n_vocab, eos_token=eos)
