"""The OpenAI wire format: requests checked and mapped onto edgekit's types, answers and errors built.

Plain data in, plain data out: no web framework here. A request field edgekit serves
maps onto :class:`~edgekit.runtimes.base.GenerationConfig` (``max_tokens`` or
``max_completion_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``; the
extensions ``top_k``, ``repetition_penalty`` and ``ignore_eos`` that llama.cpp's and
vLLM's servers also take; ``response_format``: OpenAI's ``text``, ``json_object`` and ``json_schema``, and
edgekit's ``regex``, ``lark`` and ``choice``, see :mod:`edgekit.runtimes.constrain`; ``tools``, ``tool_choice``
and tool messages, see :mod:`edgekit.runtimes.tools`). A field that only has a
harmless default (``n: 1``, ``presence_penalty: 0`` ...) is accepted at that
default; any other value, and any field edgekit does not know, is a 400 in OpenAI's
error shape that names the field, never silently ignored. ``user``, ``metadata`` and
``store`` are accepted and ignored (they change nothing about the answer).

``logprobs`` come from the confidence edgekit computes for every local token: the
chosen token's log-probability under the model's own distribution (before sampling
settings). Only the chosen token's are served (``top_logprobs: 0``); an answer from a
remote tier has none (``logprobs: null``).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import (
    ArtifactError,
    ConfigError,
    ContextOverflowError,
    FallbackExhausted,
    RemoteAuthError,
    RemoteError,
    RemoteTimeout,
    UserError,
    is_int,
)
from edgekit.runtimes.base import GenerationConfig

FINISH = {"eos": "stop", "stop": "stop", "length": "length", "tool_calls": "tool_calls"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}

# field: the value it is accepted at (any other is a 400); checked with ==, None always passes
_DEFAULT_ONLY = {
    "n": 1, "best_of": 1, "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "echo": False,
    "suffix": None, "functions": [],
    "function_call": "none", "modalities": ["text"], "top_logprobs": 0,
}
_IGNORED = {"user", "metadata", "store", "model"}
_GEN = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "top_k", "repetition_penalty", "ignore_eos"}
CHAT_FIELDS = {"messages", "stream", "stream_options", "logprobs", "response_format", "tools", "tool_choice",
               "parallel_tool_calls", *_GEN, *_IGNORED,
               *(set(_DEFAULT_ONLY) - {"best_of", "echo", "suffix"})}
COMPLETION_FIELDS = {"prompt", "stream", "stream_options", "logprobs", *_GEN, *_IGNORED,
                     "n", "best_of", "presence_penalty", "frequency_penalty", "logit_bias", "echo", "suffix"}
EMBEDDING_FIELDS = {"input", "encoding_format", "dimensions", "user", "model"}


class ApiError(Exception):
    """An answer in OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def error_for(exc: BaseException) -> ApiError:
    """The HTTP error a failure of a tier becomes (the caller redacts secrets from the message)."""
    if isinstance(exc, ApiError):
        return exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, text, param="messages", code="context_length_exceeded")
    if isinstance(exc, ArtifactError):  # the server's own model file is damaged: not the request's fault
        return ApiError(500, f"the server's model is damaged: {text}", type="server_error", code="model_damaged")
    if isinstance(exc, UserError):
        return ApiError(400, text, param=(exc.params[0] if getattr(exc, "params", ()) else None))
    if isinstance(exc, FallbackExhausted):
        return ApiError(502, text, type="server_error", code="fallback_exhausted")
    if isinstance(exc, RemoteTimeout):
        return ApiError(504, f"the remote tier timed out: {text}", type="server_error", code="remote_timeout")
    if isinstance(exc, RemoteAuthError):
        return ApiError(502, f"the remote tier refused the server's credentials: {text}", type="server_error", code="remote_auth")
    if isinstance(exc, RemoteError):
        return ApiError(502, f"the remote tier failed: {text}", type="server_error", code="remote_error")
    if isinstance(exc, Exception) and type(exc).__module__.startswith("edgekit"):
        return ApiError(500, f"the model failed: {text}", type="server_error", code="backend_error")
    return ApiError(500, f"internal error ({type(exc).__name__}): see the server's log", type="server_error", code="internal_error")


# ---- requests ---------------------------------------------------------------------------------------------
@dataclass
class GenRequest:
    """A chat or completion request, checked: what to ask the tier and how to answer."""

    kind: str  # "chat" (payload: messages) or "generate" (payload: prompt)
    payload: Any
    cfg: GenerationConfig
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = ""

    def __post_init__(self):
        if not self.id:
            self.id = ("chatcmpl-" if self.kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise bad("the request body must be a JSON object")
    return data


def _given(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _check_fields(data: dict[str, Any], allowed: set[str]) -> None:
    for name in data:
        if name not in allowed:
            raise bad(f"unsupported field '{name}': edgekit serve does not implement it (remove it)", param=name)
    for name, accepted in _DEFAULT_ONLY.items():
        if name in data and data[name] != accepted:
            raise bad(f"{name}={json.dumps(data[name])[:60]} is not supported: edgekit serves only {name}={json.dumps(accepted)}",
                      param=name)


def _int(data, name, low=None) -> int | None:
    v = data.get(name)
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not is_int(v, low):
        raise bad(f"{name} must be an integer{f' >= {low}' if low is not None else ''}, got {json.dumps(v)[:40]}", param=name)
    return v


def _num(data, name, low, high, *, open_low=False) -> float | None:
    v = data.get(name)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v > high or v < low or (open_low and v == low):
        span = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise bad(f"{name} must be a number in {span}, got {json.dumps(v)[:40]}", param=name)
    return float(v)


def _bool(data, name) -> bool:
    v = data.get(name, False)
    if not isinstance(v, bool):
        raise bad(f"{name} must be true or false, got {json.dumps(v)[:40]}", param=name)
    return v


def _config(data: dict[str, Any], default_max: int) -> GenerationConfig:
    max_tokens = _int(data, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(data, "max_tokens", 1)
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and (not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop)):
        raise bad("stop must be a non-empty string or a list of up to 4 non-empty strings", param="stop")
    settings = {
        "max_tokens": max_tokens if max_tokens is not None else default_max,
        "temperature": _num(data, "temperature", 0, 2),
        "top_p": _num(data, "top_p", 0, 1, open_low=True),
        "top_k": _int(data, "top_k", 0),
        "repetition_penalty": _num(data, "repetition_penalty", 0, 10, open_low=True),
        "stop": tuple(stop or ()),
        "seed": _int(data, "seed"),
        "ignore_eos": _bool(data, "ignore_eos"),
    }
    try:
        cfg = GenerationConfig(**{k: v for k, v in settings.items() if v is not None})
    except ConfigError as exc:
        raise bad(str(exc).removeprefix("invalid generation config: ")) from exc
    extra = {k: data[k] for k in ("response_format", "tools", "tool_choice") if data.get(k) is not None}
    if "parallel_tool_calls" in data and not isinstance(data["parallel_tool_calls"], bool):
        raise bad("parallel_tool_calls must be true or false", param="parallel_tool_calls")
    if extra:
        try:
            cfg = dataclasses.replace(cfg, **extra)
        except ConfigError as exc:
            raise bad(str(exc), param=exc.params[0] if exc.params else "tools") from exc
    return cfg


def _stream_options(data: dict[str, Any], stream: bool) -> bool:
    opts = data.get("stream_options")
    if opts is None:
        return False
    if not stream:
        raise bad("stream_options is only allowed with stream=true", param="stream_options")
    if not isinstance(opts, dict) or set(opts) - {"include_usage"} or not isinstance(opts.get("include_usage", False), bool):
        raise bad('stream_options must be {"include_usage": true|false}', param="stream_options")
    return bool(opts.get("include_usage", False))


def _content(i: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad(f"messages[{i}].content: only text parts are supported, got {kind!r}", param="messages")
            parts.append(part["text"])
        return "".join(parts)
    raise bad(f"messages[{i}].content must be a string or a list of text parts", param="messages")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise bad("messages must be a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise bad(f"messages[{i}] must be an object with role and content", param="messages")
        role = ROLES.get(m.get("role"))
        if role is None:
            raise bad(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m.get('role')!r:.40}", param="messages")
        for key in ("function_call", "audio"):
            if m.get(key):
                raise bad(f"messages[{i}].{key} is not supported: edgekit serve answers text only", param="messages")
        calls = m.get("tool_calls")
        if calls:
            out.append({"role": "assistant", "content": _content(i, m["content"]) if m.get("content") else None,
                        "tool_calls": _tool_calls(i, role, calls)})
            continue
        msg = {"role": role, "content": _content(i, m.get("content"))}
        if role == "tool" and isinstance(m.get("tool_call_id"), str):
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out


def _tool_calls(i: int, role: str, calls: Any) -> list[dict]:
    """An assistant message's tool_calls, checked: OpenAI's [{id, type: function, function: {name, arguments}}]."""
    where = f"messages[{i}].tool_calls"
    if role != "assistant" or not isinstance(calls, list):
        raise bad(f"{where}: only an assistant message carries tool_calls, as a list", param="messages")
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise bad(f"{where}[{j}] must be {{id, type: function, function: {{name, arguments (a JSON string)}}}}",
                      param="messages")
    return calls


def parse_chat(data: dict[str, Any], default_max: int) -> GenRequest:
    data = _given(data)
    _check_fields(data, CHAT_FIELDS)
    if "messages" not in data:
        raise bad("messages is required", param="messages")
    stream = _bool(data, "stream")
    return GenRequest("chat", _messages(data["messages"]), _config(data, default_max), stream,
                      _stream_options(data, stream), _bool(data, "logprobs"))


def parse_completion(data: dict[str, Any]) -> GenRequest:
    data = _given(data)
    _check_fields(data, COMPLETION_FIELDS)
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("prompt must be a string (token-id prompts and batches of prompts are not supported)", param="prompt")
    if not prompt:
        raise bad("prompt is empty: pass some text", param="prompt")
    logprobs = _int(data, "logprobs", 0)
    if logprobs:
        raise bad(f"logprobs={logprobs} asks for alternatives; edgekit serves only the chosen token's: pass logprobs=0",
                  param="logprobs")
    stream = _bool(data, "stream")
    return GenRequest("generate", prompt, _config(data, 16), stream, _stream_options(data, stream), logprobs == 0)


@dataclass
class EmbedRequest:
    texts: list[str]
    base64: bool
    dimensions: int | None


def parse_embeddings(data: dict[str, Any]) -> EmbedRequest:
    data = _given(data)
    for name in data:
        if name not in EMBEDDING_FIELDS:
            raise bad(f"unsupported field '{name}': edgekit serve does not implement it (remove it)", param=name)
    texts = data.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad("input must be a string or a non-empty list of strings (token ids are not supported)", param="input")
    if len(texts) > 2048:
        raise bad(f"input holds {len(texts)} texts; at most 2048 per request", param="input")
    fmt = data.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise bad(f"encoding_format must be 'float' or 'base64', got {fmt!r:.40}", param="encoding_format")
    return EmbedRequest(texts, fmt == "base64", _int(data, "dimensions", 1))


# ---- answers ----------------------------------------------------------------------------------------------
@dataclass
class Piece:
    """One generated token as the server sends it: its text, and its log-probability when local."""

    text: str
    logprob: float | None = None
    token: str | None = None
    finish: str | None = None


def logprob_entry(p: Piece) -> dict[str, Any]:
    token = p.token if p.token is not None else p.text
    return {"token": token, "logprob": p.logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": []}


def chat_logprobs(pieces: list[Piece]) -> dict[str, Any] | None:
    if not pieces or any(p.logprob is None for p in pieces):
        return None
    return {"content": [logprob_entry(p) for p in pieces]}


def completion_logprobs(pieces: list[Piece], offset: int = 0) -> dict[str, Any] | None:
    if not pieces or any(p.logprob is None for p in pieces):
        return None
    tokens = [p.token if p.token is not None else p.text for p in pieces]
    offsets, pos = [], offset
    for p in pieces:
        offsets.append(pos)
        pos += len(p.text)
    return {"tokens": tokens, "token_logprobs": [p.logprob for p in pieces], "top_logprobs": None, "text_offset": offsets}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(req: GenRequest, model: str, text: str, finish: str | None, pieces: list[Piece] | None,
                    use: dict[str, int], edgekit: dict[str, Any], tool_calls: list[dict] | None = None) -> dict[str, Any]:
    fin = FINISH.get(finish or "", "stop")
    if req.kind == "chat" and tool_calls:
        choice = {"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": tool_calls},
                  "logprobs": None, "finish_reason": "tool_calls"}
        obj = "chat.completion"
    elif req.kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "logprobs": chat_logprobs(pieces) if req.logprobs and pieces else None, "finish_reason": fin}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": completion_logprobs(pieces) if req.logprobs and pieces else None,
                  "finish_reason": fin}
        obj = "text_completion"
    return {"id": req.id, "object": obj, "created": req.created, "model": model, "choices": [choice],
            "usage": use, "system_fingerprint": None, "edgekit": edgekit}


def chunk(req: GenRequest, model: str, text: str | None, *, role: bool = False, finish: str | None = None,
          pieces: list[Piece] | None = None, offset: int = 0, edgekit: dict[str, Any] | None = None,
          tool_calls: list[dict] | None = None) -> dict[str, Any]:
    """One streamed chunk (``chat.completion.chunk`` or ``text_completion``); ``tool_calls``: the calls as one
    delta each (index, id, type, function with the whole arguments)."""
    fin = FINISH.get(finish, "stop") if finish else None
    if req.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        if tool_calls:
            delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(tool_calls)]
        lp = chat_logprobs(pieces) if req.logprobs and pieces else None
        choice = {"index": 0, "delta": delta, "logprobs": lp, "finish_reason": fin}
        obj = "chat.completion.chunk"
    else:
        lp = completion_logprobs(pieces, offset) if req.logprobs and pieces else None
        choice = {"index": 0, "text": text or "", "logprobs": lp, "finish_reason": fin}
        obj = "text_completion"
    out = {"id": req.id, "object": obj, "created": req.created, "model": model, "choices": [choice]}
    if edgekit is not None:
        out["edgekit"] = edgekit
    return out


def usage_chunk(req: GenRequest, model: str, use: dict[str, int]) -> dict[str, Any]:
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {"id": req.id, "object": obj, "created": req.created, "model": model, "choices": [], "usage": use}


def sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False)
    return f"data: {payload}\n\n".encode()


def embedding_body(vectors, model: str, as_base64: bool, prompt_tokens: int) -> dict[str, Any]:
    import numpy as np

    data = []
    for i, v in enumerate(vectors):
        v = np.asarray(v, dtype="<f4")
        emb: Any = base64.b64encode(v.tobytes()).decode("ascii") if as_base64 else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def model_card(name: str, created: int, **extra: Any) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "edgekit", **extra}


def clean(value: Any) -> Any:
    """NaN/inf -> None, recursively: every answer is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


__all__ = ["ApiError", "GenRequest", "EmbedRequest", "Piece", "parse_chat", "parse_completion", "parse_embeddings",
           "parse_json", "error_for", "completion_body", "chunk", "usage_chunk", "usage", "sse", "embedding_body",
           "model_card", "clean", "FINISH"]
