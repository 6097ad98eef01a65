"""The chat template and special tokens in forms an app can use without Python.

An app gets the model's own Jinja template (for a Jinja engine: swift-transformers,
minja in llama.cpp) and, derived from it, plain strings per role: ``begin`` once, then
for each message ``prefix + content + suffix``, then ``generation_prompt`` before the
model answers; ``preamble_without_system`` stands in for the system message when the
conversation has none (SmolLM2's template adds a default system prompt there).

The strings are found by rendering the template with sentinel contents and cutting the
text at the sentinels, conversation by conversation (system; + user; + assistant; ...).
They are checked: rebuilt from the strings, two conversations (with and without a system
message) must equal the template's own rendering, else ``exact`` is False and the app
should use the template. A template that refuses a role (Gemma has no system role) leaves
that role out.
"""

from __future__ import annotations

from typing import Any

from edgekit.errors import ConfigError

BOS_MARK = "\x02EDGEKIT_BOS\x03"  # stands for bos_token while rendering: does the template write it?
# mixed case, no spaces: a template that trims a message leaves it whole, one that changes case does not
SENTINEL = {"system": "EdgekitSystem7d1c", "user": "EdgekitUser7d1c", "assistant": "EdgekitAssistant7d1c",
            "user2": "EdgekitUserTwo7d1c", "assistant2": "EdgekitAssistantTwo7d1c"}
ROLES = ("system", "user", "assistant")


def _render(template: str, messages: list[dict], gen: bool, special: dict[str, str]) -> str:
    from edgekit.runtimes.chat import render

    return render(template, messages, add_generation_prompt=gen, **special)


def _cut(piece: str, sentinel: str) -> tuple[str, str] | None:
    if piece.count(sentinel) != 1:
        return None
    before, after = piece.split(sentinel)
    return before, after


def derive_roles(template: str, special_tokens: dict[str, str]) -> dict[str, Any]:
    """Prefix/suffix strings per role, the generation prompt and the preamble, checked against the template."""
    marked = {**special_tokens, "bos_token": BOS_MARK}
    bos = special_tokens.get("bos_token", "")
    msg = {k: {"role": k.rstrip("2"), "content": v} for k, v in SENTINEL.items()}
    conversation = [msg["system"], msg["user"], msg["assistant"], msg["user2"], msg["assistant2"]]

    def render(messages, gen=False):
        return _render(template, messages, gen, marked)

    result: dict[str, Any] = {"begin": "", "roles": {}, "generation_prompt": None, "preamble_without_system": None,
                              "exact": False, "note": ""}
    try:
        texts = [render(conversation[:k]) for k in range(1, len(conversation) + 1)]
        has_system = True
    except ConfigError:  # the template refuses a system message: derive the rest without one
        conversation = conversation[1:]
        texts = [render(conversation[:k]) for k in range(1, len(conversation) + 1)]
        has_system = False
    if texts[0].startswith(BOS_MARK):
        result["begin"] = bos
    texts = [t.removeprefix(BOS_MARK) for t in texts]
    if any(BOS_MARK in t for t in texts) or any(not b.startswith(a) for a, b in zip(texts, texts[1:])):
        result["note"] = "the template does not render a conversation as consecutive messages: use the Jinja template"
        return result
    pieces, prev = [], ""
    for m, text in zip(conversation, texts):
        cut = _cut(text[len(prev):], m["content"])
        if cut is None:
            result["note"] = "the template rewrites message contents: use the Jinja template"
            return result
        pieces.append((m["role"], cut))
        prev = text
    first_user = 1 if has_system else 0
    user_only = render([msg["user"]], gen=True).removeprefix(BOS_MARK)
    preamble, _, _ = user_only.partition(pieces[first_user][1][0] + SENTINEL["user"])
    with_gen = render(conversation[: first_user + 1], gen=True).removeprefix(BOS_MARK)
    roles = {}
    for role, (prefix, suffix) in pieces:
        roles.setdefault(role, {"prefix": prefix, "suffix": suffix})
    result.update(roles=roles, generation_prompt=with_gen[len(texts[first_user]):],
                  preamble_without_system=preamble if has_system else "")
    # the check: rebuild both conversations from the strings
    def rebuild(messages, opening):
        out = result["begin"] + opening
        for m in messages:
            r = roles[m["role"]]
            out += r["prefix"] + m["content"] + r["suffix"]
        return out
    real = {**special_tokens}
    exact = rebuild(conversation, "") == _render(template, conversation, False, real)
    exact = exact and rebuild([msg["user"]], preamble) + result["generation_prompt"] == \
        _render(template, [msg["user"]], True, real)
    result["exact"] = exact
    if not has_system:
        result["note"] = "the template refuses system messages"
    elif not exact:
        result["note"] = "the strings do not rebuild the template's output exactly: use the Jinja template"
    return result


def chat_info(template: str | None, special_tokens: dict[str, str]) -> dict[str, Any] | None:
    """package.json's ``chat``: the Jinja template and the derived strings (None without a template)."""
    if not template:
        return None
    info = {"template": template}
    try:
        info.update(derive_roles(template, special_tokens))
    except ConfigError as exc:  # a template that fails on a plain conversation
        info.update(begin="", roles={}, generation_prompt=None, preamble_without_system=None, exact=False,
                    note=f"the template could not be rendered ({exc}): use it with care")
    return info


GENERATION_KEYS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
                   "repetition_penalty": "repetition_penalty"}


def generation_settings(gen_config: dict[str, Any], eos_texts: list[str]) -> dict[str, Any]:
    """Recommended sampling settings: the model's generation_config.json where it has them, else edgekit's
    defaults (greedy); the stop strings are the end-of-turn tokens."""
    out: dict[str, Any] = {"max_tokens": 256, "temperature": 0.0, "top_k": 0, "top_p": 1.0,
                           "repetition_penalty": 1.0, "stop": sorted(set(eos_texts))}
    found = []
    if gen_config.get("do_sample") is True:
        for key, name in GENERATION_KEYS.items():
            value = gen_config.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value
                found.append(key)
    elif isinstance(gen_config.get("repetition_penalty"), (int, float)):
        out["repetition_penalty"] = gen_config["repetition_penalty"]
        found.append("repetition_penalty")
    out["source"] = ("generation_config.json (" + ", ".join(found) + ")" if found
                     else "edgekit defaults (greedy): the model's generation_config.json sets no sampling")
    return out
