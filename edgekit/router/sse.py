"""Parsing what an OpenAI-compatible server sends: server-sent events, stream chunks, error bodies.

Everything here turns untrusted bytes into values or raises
:class:`~edgekit.errors.RemoteProtocolError` / :class:`~edgekit.errors.RemoteUnavailable`
(tests/test_parsers_fuzz.py feeds it random and mutated streams). ``remote`` is the
:class:`~edgekit.router.remote.RemoteLLM` being read: errors name it (``where()``) and
quote the server scrubbed of the API key (``redact()``).
"""

from __future__ import annotations

from typing import Any, Iterator

from edgekit.errors import RemoteProtocolError, RemoteUnavailable, is_int
from edgekit.fileio import parse_json


def error_detail(text: str) -> str:
    """The message of an OpenAI-style error body, else the start of the body, on one line."""
    try:
        data = parse_json(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            text = str(err)
    return " ".join(text.split())[:200]


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent event stream (comments, event names and ids ignored)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def chunks(remote: Any, lines: Iterator[str], calls: list[dict] | None = None
           ) -> Iterator[tuple[str, str | None, dict | None]]:
    """(content delta, finish_reason, usage) per chat.completion.chunk, until ``[DONE]``; ``calls`` collects the
    chunks' tool_calls deltas (:func:`merge_calls`).

    A body with no server-sent event at all (an HTML page, a JSON object of another API) is a
    :class:`RemoteProtocolError` quoting its start: retrying the same URL gets the same page. An empty
    one (or keep-alive comments only) was cut off: :class:`RemoteUnavailable`, retried like an outage.
    """
    head: list[str] = []  # the first lines that are not blank or SSE comments (": keep-alive")

    def recorded() -> Iterator[str]:
        for line in lines:
            if len(head) < 4 and line.strip() and not line.startswith(":"):
                head.append(line.strip())
            yield line

    events = 0
    for payload in sse_data(recorded()):
        events += 1
        if payload.strip() == "[DONE]":
            return
        try:
            chunk = parse_json(payload)
        except ValueError as exc:
            raise RemoteProtocolError(f"{remote.where()} sent a malformed stream event: {remote.redact(payload[:120])!r}") from exc
        if not isinstance(chunk, dict):
            raise RemoteProtocolError(f"{remote.where()} sent a stream event that is not an object: {remote.redact(payload[:120])!r}")
        if "error" in chunk:
            raise RemoteUnavailable(f"{remote.where()} reported an error mid-stream: {remote.redact(error_detail(payload))}")
        usage = usage_counts(chunk.get("usage"))
        choices = chunk.get("choices")
        if not choices:
            if usage is None:
                raise RemoteProtocolError(f"{remote.where()} sent a stream event without choices: {remote.redact(payload[:120])!r}")
            yield "", None, usage
            continue
        try:
            choice = choices[0]
            delta = choice.get("delta") or {}
            content = delta.get("content") or ""
            finish = choice.get("finish_reason")
            if calls is not None and delta.get("tool_calls"):
                merge_calls(calls, delta["tool_calls"])
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise RemoteProtocolError(f"{remote.where()} sent a malformed chunk: {remote.redact(payload[:120])!r}") from exc
        if not isinstance(content, str):
            raise RemoteProtocolError(f"{remote.where()} sent non-text content: {remote.redact(payload[:120])!r}")
        if finish is not None and not isinstance(finish, str):
            raise RemoteProtocolError(f"{remote.where()} sent a finish_reason that is not text: {remote.redact(payload[:120])!r}")
        yield content, finish, usage
    if not events:
        if not head:  # nothing, or only keep-alive comments, then the end: cut off, as an outage is
            raise RemoteUnavailable(f"{remote.where()} ended the stream before sending any event")
        body = remote.redact(" ".join(head)[:160])
        raise RemoteProtocolError(
            f"{remote.where()} answered a streaming request without a single server-sent event (its body starts "
            f"{body!r}): check that the URL is an OpenAI-compatible API base, e.g. http://host:port/v1")


def merge_calls(calls: list[dict], deltas: list) -> None:
    """Fold one chunk's tool_calls deltas into ``calls`` (OpenAI's stream: the id and name come first, the
    arguments in pieces, each delta naming its call's ``index``). Raises TypeError/KeyError on another shape."""
    for d in deltas:
        i = d["index"]
        while len(calls) <= i:
            calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        fn = d.get("function") or {}
        calls[i]["id"] = d.get("id") or calls[i]["id"]
        calls[i]["function"]["name"] += fn.get("name") or ""
        calls[i]["function"]["arguments"] += fn.get("arguments") or ""


def message_of(remote: Any, data: Any, raw: str) -> tuple[str, str | None, list[dict] | None]:
    """(content, finish_reason, tool_calls) of a chat completion; RemoteProtocolError for any other body."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
        calls = choice["message"].get("tool_calls") or None
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        if finish is not None and not isinstance(finish, str):
            raise TypeError("finish_reason is not a string")
        if calls is not None and not all(isinstance(c["function"]["name"], str)
                                         and isinstance(c["function"]["arguments"], str) for c in calls):
            raise TypeError("tool_calls are not OpenAI's")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise RemoteProtocolError(
            f"{remote.where()} answered something that is not a chat completion: {remote.redact(raw[:200])!r}") from exc
    return text, finish, calls


def usage_counts(value) -> dict[str, int] | None:
    """The token counts of a ``usage`` object; a count that is not a whole number >= 0 reads as unknown (0).

    Counts only feed the timings, so a server's junk there does not cost the caller the answer.
    """
    if not isinstance(value, dict):
        return None
    counts = {}
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        n = value.get(key)
        if n is not None:
            counts[key] = n if is_int(n, 0) else 0
    return counts


__all__ = ["sse_data", "chunks", "merge_calls", "message_of", "usage_counts", "error_detail"]
