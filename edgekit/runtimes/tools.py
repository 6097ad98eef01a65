"""Tool calling on local models: OpenAI's ``tools`` / ``tool_choice``, a grammar that holds each call's arguments to
its tool's parameter schema, and calls parsed back into OpenAI's ``tool_calls`` shape.

The wire format between the model and edgekit is Hermes' (the one Qwen2.5's, Hermes' and SmolLM3's chat templates
describe)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A chat template that takes ``tools`` (it names the variable) renders them itself; for one that does not, edgekit
puts :func:`default_system_text` in the system message (a documented default, see the README). Either way the
answer is held by a grammar (llguidance, see :mod:`edgekit.runtimes.constrain`):

* ``"required"``: one call of any tool; ``{"type": "function", "function": {"name": N}}``: one call of N;
* ``"auto"``: free text that does not begin with ``<``, or one call;
* ``"none"``: the tools are shown to the model but the answer is free text.

An assistant message with ``tool_calls`` and a ``tool`` message with its result go back into the conversation:
for templates without tools support they are written in the same Hermes format (``<tool_response>``).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from edgekit.errors import ConfigError
from edgekit.runtimes.constrain import ResponseFormat, response_format

OPEN, CLOSE = "<tool_call>\n", "\n</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("auto", "required", "none")


@dataclass(frozen=True, eq=False)
class ToolSet:
    """Checked tools and tool choice; ``format`` is the grammar an answer is held to (None for ``"none"``)."""

    tools: tuple[dict, ...]
    choice: str | dict
    format: ResponseFormat | None

    @property
    def names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def openai(self) -> dict[str, Any]:
        """The request fields for an OpenAI-compatible remote."""
        return {"tools": [dict(t) for t in self.tools], "tool_choice": self.choice}


def _bad(message: str) -> ConfigError:
    return ConfigError(message, param="tools")


def _check_tool(i: int, tool: Any) -> dict:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(
            tool.get("function"), dict):
        raise _bad(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., 'parameters': {{...}}}}}}")
    fn = tool["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _bad(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-', got {name!r:.40}")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise _bad(f"tools[{i}].function.parameters must be a JSON schema object ({name})")
    desc = fn.get("description", "")
    if not isinstance(desc, str):
        raise _bad(f"tools[{i}].function.description must be a string ({name})")
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}


def tool_set(tools: Any, tool_choice: Any = None) -> ToolSet | None:
    """``tools`` and ``tool_choice`` as a :class:`ToolSet` (None without tools); ConfigError naming what is wrong."""
    if tools is None or isinstance(tools, ToolSet):
        if tool_choice is not None and tools is None and tool_choice != "none":
            raise ConfigError("tool_choice needs tools: pass tools=[...]", param="tool_choice")
        return tools
    if not isinstance(tools, (list, tuple)) or not tools:
        raise _bad("tools must be a non-empty list of {'type': 'function', 'function': {...}} objects")
    checked = tuple(_check_tool(i, t) for i, t in enumerate(tools))
    names = [t["function"]["name"] for t in checked]
    if len(set(names)) != len(names):
        raise _bad(f"tools has two functions named {next(n for n in names if names.count(n) > 1)!r}")
    choice = "auto" if tool_choice is None else tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") if choice.get("type") == "function" else None
        if name not in names:
            raise ConfigError(f"tool_choice names {name!r}, which is not among the tools ({', '.join(names)})",
                              param="tool_choice")
        pick = [t for t in checked if t["function"]["name"] == name]
    elif choice in CHOICES:
        pick = list(checked)
    else:
        raise ConfigError(f"tool_choice must be one of {', '.join(CHOICES)} or {{'type': 'function', 'function': "
                          f"{{'name': ...}}}}, got {choice!r:.40}", param="tool_choice")
    fmt = None if choice == "none" else _grammar(pick, optional=choice == "auto")
    return ToolSet(checked, choice, fmt)


def _call_schema(tools: list[dict]) -> dict:
    calls = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
              "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]}}
             for t in tools]
    return calls[0] if len(calls) == 1 else {"anyOf": calls}


def _grammar(tools: list[dict], optional: bool) -> ResponseFormat:
    call = f'"{_lark_str(OPEN)}" call "{_lark_str(CLOSE)}"'
    lines = ([f"start: TEXT | {call}", "TEXT: /[^<](.|\\n)*/"] if optional else [f"start: {call}"])
    lines.append(f"call: %json {json.dumps(_call_schema(tools))}")
    return response_format({"type": "lark", "grammar": "\n".join(lines) + "\n"})


def _lark_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_calls(text: str, tools: ToolSet) -> list[dict] | None:
    """The tool calls in an answer, in OpenAI's shape (None when the answer is text)."""
    body = text.strip()
    if not (body.startswith(OPEN.strip()) and body.endswith(CLOSE.strip())):
        return None
    try:
        call = json.loads(body[len(OPEN.strip()):-len(CLOSE.strip())])
    except ValueError:
        return None
    if not isinstance(call, dict) or call.get("name") not in tools.names or not isinstance(call.get("arguments"), dict):
        return None
    return [{"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}]


def default_system_text(tools: ToolSet) -> str:
    """What a model whose template has no tools support is told about them (edgekit's documented default)."""
    specs = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in tools.tools)
    return ("You can call functions. Their signatures are inside <tools></tools>:\n<tools>\n" + specs + "\n</tools>\n"
            "To call one, answer only with a JSON object inside <tool_call></tool_call> tags:\n"
            '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n'
            "A function's result comes back inside <tool_response></tool_response> tags.")


def template_takes_tools(template: str) -> bool:
    """Whether a chat template renders ``tools`` itself (it names the variable, as transformers checks too)."""
    return re.search(r"\btools\b", template) is not None


def fold_messages(messages: list[dict], tools: ToolSet | None) -> list[dict]:
    """Messages for a template without tools support: the tools in the system message, assistant tool calls and
    tool results as Hermes text."""
    out = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant" and m.get("tool_calls"):
            calls = "\n".join(OPEN + json.dumps({"name": c["function"]["name"],
                                                 "arguments": _arguments(c["function"].get("arguments"))},
                                                ensure_ascii=False) + CLOSE for c in m["tool_calls"])
            out.append({"role": "assistant", "content": (content + "\n" if content else "") + calls})
        elif role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            out.append({"role": role, "content": content})
    if tools is not None:
        text = default_system_text(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + text}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
