"""The shapes a JSON schema takes on the wire to a remote: OpenAI's, and the one llama-cpp-python's server takes.

OpenAI, vLLM, Ollama and llama.cpp's server take ``{"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}``. llama-cpp-python's server takes only ``{"type": "json_object", "schema": {...}}`` and answers any
other type with an error that names ``response_format``: the remote sends OpenAI's shape first and switches for
good after such a refusal.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("edgekit.remote")


def schema_form(openai_form: dict[str, Any], json_object: bool) -> dict[str, Any]:
    """``openai_form`` as sent: unchanged, or (``json_object``) a json_schema as ``{"type": "json_object",
    "schema": ...}``."""
    if json_object and openai_form.get("type") == "json_schema":
        return {"type": "json_object", "schema": openai_form["json_schema"].get("schema", {})}
    return openai_form


def use_json_object(body: dict[str, Any], error: str, where: str) -> bool:
    """When a request carrying OpenAI's json_schema shape failed with an error that names response_format: put
    the schema in ``body`` as ``{"type": "json_object", "schema": ...}`` and return True (the caller retries)."""
    fmt = body.get("response_format")
    if not (isinstance(fmt, dict) and fmt.get("type") == "json_schema" and "response_format" in error):
        return False
    body["response_format"] = schema_form(fmt, True)
    log.info("%s does not take OpenAI's json_schema response_format; sending the schema as "
             '{"type": "json_object", "schema": ...} from now on', where)
    return True
