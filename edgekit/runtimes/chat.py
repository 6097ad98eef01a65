"""Render a model's own chat template (Hugging Face Jinja format) with jinja2.

The template comes from ``tokenizer_config.json`` / ``chat_template.jinja`` for
ONNX artifacts and from ``tokenizer.chat_template`` in GGUF metadata. It runs in
jinja2's sandbox with the helpers Hugging Face templates expect
(``raise_exception``, ``strftime_now``, the ``tojson`` filter).
"""

from __future__ import annotations

import datetime as _dt
import json
from functools import lru_cache
from typing import Sequence

from edgekit.errors import ConfigError
from edgekit.translate import translated

ROLES = ("system", "user", "assistant", "tool")


def _raise(message: str):
    raise ConfigError(f"the chat template refused the messages: {message}")


@lru_cache(maxsize=8)
def _compile(template: str):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as exc:  # jinja2 is a core dependency; this is a broken install
        raise ConfigError("jinja2 is missing: pip install jinja2") from exc
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent, ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: _dt.datetime.now().strftime(fmt)
    with translated("jinja2", "compile"):
        return env.from_string(template)


def check_messages(messages: Sequence[dict]) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ConfigError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        calls = isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("tool_calls"), list) \
            and m["tool_calls"] and m.get("content") is None  # OpenAI's shape of a message that only calls tools
        if not isinstance(m, dict) or not (isinstance(m.get("content"), str) or calls) or m.get("role") not in ROLES:
            raise ConfigError(f"message {i} must be a dict with role in {ROLES} and a string content, got {m!r:.80}")
        out.append(dict(m))
    return out


def render(template: str, messages: Sequence[dict], *, add_generation_prompt: bool = True, **variables) -> str:
    """``template`` over the messages; ``variables``: the special tokens, and ``tools`` for a template that takes them."""
    msgs = check_messages(messages)
    with translated("jinja2", "render"):  # raise_exception in the template raises our ConfigError: it passes through
        return _compile(template).render(messages=msgs, add_generation_prompt=add_generation_prompt, **variables)
