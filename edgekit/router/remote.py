"""A remote LLM over the OpenAI-compatible Chat Completions API (httpx): the router's remote tier.

Works with any server that speaks ``POST {base_url}/chat/completions``: llama.cpp's
server and llama-cpp-python's, Ollama, vLLM, OpenAI. Plain prompts (``generate``)
are sent as one user message: the API is chat-only on most servers.

Failure handling is the point of this module, because the router's fallback
decisions depend on it:

* connect and read timeouts are separate (a dead host fails fast; a slow model
  may take its time between bytes up to ``timeout``);
* every call has a deadline (``deadline_s``, retries and their waits included;
  :mod:`edgekit.router.limits`): a server that drips one chunk every few seconds,
  which the read timeout never catches, is cut off there with ``RemoteTimeout``;
* 429, 5xx, connection errors and timeouts are retried ``max_retries`` times with
  exponential backoff and jitter, each retry logged as a warning (``edgekit.remote``:
  the reason, the wait, attempt n of N); a ``Retry-After`` header is honoured, unless
  it asks for more than ``max_retry_after_s`` (then we give up at once rather than
  block the caller);
* the request's limits are enforced on the client too: a stream is cut after
  ``max_tokens`` content chunks (finish ``"length"``) and before a stop string
  (finish ``"stop"``) even when the server ignores them;
* a stream is retried only until its first token was handed out: text the
  caller has seen cannot be taken back, so a drop after that is an error;
* 401/403 are never retried (a wrong key does not get better);
* every httpx error is translated into :mod:`edgekit.errors` (``RemoteTimeout``,
  ``RemoteUnavailable``, ``RemoteAuthError``, ``RemoteProtocolError``).

The API key comes from ``api_key`` or the environment variable ``api_key_env``.
It is only ever put in the ``Authorization`` header: it is not in ``repr``, log
records or error messages, and server answers quoted in errors are scrubbed of it.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import threading
import time
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from edgekit.errors import (
    ConfigError,
    RemoteAuthError,
    RemoteError,
    RemoteProtocolError,
    RemoteTimeout,
    RemoteUnavailable,
)
from edgekit.fileio import parse_json
from edgekit.router.formats import schema_form, use_json_object
from edgekit.router.limits import Deadline, StreamLimits, completion_tokens, limit_text
from edgekit.router.sse import chunks, error_detail, message_of, usage_counts
from edgekit.runtimes.base import (
    GenerationConfig,
    GenerationResult,
    Timings,
    TokenEvent,
    check_prompt,
    parse_answer,
    resolve_config,
)
from edgekit.runtimes.chat import check_messages
from edgekit.translate import translate

log = logging.getLogger("edgekit.remote")

DEFAULT_KEY_ENV = "EDGEKIT_REMOTE_API_KEY"
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_FINISH = {"length": "length", "tool_calls": "tool_calls"}  # OpenAI's "stop" does not say whether a stop string matched: report "eos"


class _Secret:
    """Holds the API key; prints as ``***`` wherever it ends up (repr, f-strings, tracebacks' locals)."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or None

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "***" if self._value else "None"

    __str__ = __repr__


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def normalize_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is kept as given."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("the remote URL is empty: pass e.g. base_url=http://127.0.0.1:8080/v1", param="base_url")
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the remote URL {url!r} must look like http://host:port/v1 (http or https)")
    return url if parts.path not in ("", "/") else url + "/v1"


class RemoteLLM:
    """An OpenAI-compatible chat model over HTTP: a :class:`~edgekit.runtimes.tier.Tier` like a local Model.

    ``timeout``: seconds to wait for each read (the first byte included; a non-streamed
    answer is computed before its first byte); ``connect_timeout``: seconds to open the
    connection; ``deadline_s``: the most one call may take in all, retries and their
    waits included; ``max_retries``: extra attempts after the first on 429/5xx/connection
    errors/timeouts; ``backoff_s``: the first retry's delay, doubled each time up to
    ``max_backoff_s``, jittered. The defaults (5 s to connect, 30 s to the first byte,
    60 s per call, 2 retries waiting up to 0.5 s then 1 s) bound a remote that never answers to a
    minute, with a warning at each retry.
    ``extra_body``: additional JSON fields for servers that take more settings
    (``{"top_k": 40}`` on llama.cpp or vLLM). A RemoteLLM is safe to share between threads.
    """

    kind = "decoder"
    backend = "remote"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        deadline_s: float = 60.0,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        extra_body: dict[str, Any] | None = None,
    ):
        self.base_url = normalize_base_url(base_url)
        if not isinstance(model, str) or not model.strip():
            raise ConfigError("the remote model name is empty: pass model=NAME (the name the server serves)",
                              param="model")
        self.model = model.strip()
        self.timeout = _positive("timeout", timeout)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.deadline_s = _positive("deadline_s", deadline_s)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.max_retries = max_retries
        self.backoff_s = _positive("backoff_s", backoff_s, allow_zero=True)
        self.max_backoff_s = _positive("max_backoff_s", max_backoff_s, allow_zero=True)
        self.max_retry_after_s = _positive("max_retry_after_s", max_retry_after_s, allow_zero=True)
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ConfigError("extra_body must be a mapping of JSON fields")
        self.extra_body = dict(extra_body or {})
        self.api_key_env = api_key_env or DEFAULT_KEY_ENV
        self._key_source = "the api_key setting" if api_key is not None else f"${self.api_key_env}"
        if api_key is None:
            api_key = os.environ.get(self.api_key_env)
            if api_key is None and api_key_env and api_key_env != DEFAULT_KEY_ENV:
                raise ConfigError(f"the environment variable {api_key_env} (api_key_env) is not set: export it or drop the setting")
        self._key = _Secret(api_key)
        self._client = None
        self._client_lock = threading.Lock()
        self._rng = random.Random()

    # ---- plumbing ---------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<RemoteLLM {self.model} at {self.base_url} (api key {'set' if self._key.get() else 'not set'})>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def url(self) -> str:
        return self.base_url + "/chat/completions"

    def _http(self):
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import httpx

                    headers = {"Accept": "application/json, text/event-stream", "User-Agent": "edgekit-remote"}
                    if self._key.get():
                        headers["Authorization"] = f"Bearer {self._key.get()}"
                    self._client = httpx.Client(
                        timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout), headers=headers,
                    )
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def redact(self, text: str) -> str:
        """``text`` with the API key (and any bearer token) replaced by ``***``."""
        key = self._key.get()
        if key:
            text = text.replace(key, "***")
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)

    def where(self) -> str:
        return f"the remote {self.model} at {self.base_url}"

    # ---- requests -----------------------------------------------------------------
    def _body(self, messages: list[dict], cfg: GenerationConfig, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": cfg.max_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "stream": stream,
        }
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        fmt = cfg.response_format
        if cfg.tools is not None:
            body.update(cfg.tools.openai())
        if fmt is not None:
            if fmt.openai is None:
                raise ConfigError(f"{self.where()} speaks OpenAI's API, which has no {fmt.type} response format: "
                                  "use a JSON schema, or keep this request local", param="response_format")
            body["response_format"] = schema_form(fmt.openai, self._json_object_schema)
        body.update(self.extra_body)
        return body

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return base / 2 + self._rng.uniform(0, base / 2)  # "equal jitter": never 0, never in lockstep

    def _backoff(self, attempts: list[int], error: RemoteError, cause, deadline: Deadline,
                 retry_after: float | None = None) -> None:
        """Sleep before the next attempt, or raise ``error`` when retries or the deadline are spent (or
        Retry-After asks too much). Each retry is logged as a warning: the reason, the wait, attempt n of N.

        ``attempts`` is one counter shared by the connection and the stream of one request,
        so a request makes at most ``max_retries + 1`` attempts in all.
        """
        made = attempts[0] + 1
        if attempts[0] >= self.max_retries:
            raise (type(error)(f"{error} (gave up after {made} attempts)") if made > 1 else error) from cause
        if retry_after is not None and retry_after > self.max_retry_after_s:
            raise RemoteUnavailable(
                f"{error} (it asks to retry after {retry_after:.0f} s, more than max_retry_after_s={self.max_retry_after_s:g})"
            ) from cause
        delay = self._delay(attempts[0], retry_after)
        if delay >= deadline.left():
            if isinstance(error, RemoteTimeout) and deadline.passed():  # the deadline's own error says it all
                raise error from cause
            raise type(error)(f"{error} (no time left for another attempt before the deadline, {deadline.why})") from cause
        attempts[0] += 1
        log.warning("%s; retrying in %.2f s (attempt %d of %d)", error, delay, attempts[0] + 1, self.max_retries + 1)
        time.sleep(delay)

    def _call_error(self, exc, deadline: Deadline, dropped: str) -> RemoteError:
        """The edgekit error for an httpx transport error (``dropped`` words a connection lost midway): the
        deadline's own error once it has passed, else the translation table's (``edgekit.translate``)."""
        if deadline.passed():  # the watchdog shut the socket, or a wait capped by the deadline ran out
            return RemoteTimeout(f"{self.where()} {deadline.describe()}")
        return self._translate(exc, dropped=dropped)

    def _translate(self, exc, *, dropped: str = "", what: str = "answer") -> RemoteError:
        """The translation table's error for an httpx error; ``what``: the body an undecodable one could not read."""
        return translate(exc, "httpx", "send", where=self.where(), dropped=dropped, what=what,  # type: ignore
                         connect_timeout=self.connect_timeout, read_timeout=self.timeout, detail=self.redact(str(exc)))

    def _open(self, body: dict[str, Any], deadline: Deadline, *, read_body: bool, attempts: list[int] | None = None):
        """POST with retries; return the 200 response (its body read unless streaming) or raise RemoteError."""
        import httpx

        client = self._http()
        attempts = attempts if attempts is not None else [0]
        if deadline.passed():  # e.g. a Router's budget was spent before it asked
            raise RemoteTimeout(f"{self.where()} {deadline.describe()}")
        while True:
            retry_after = None
            timeout = deadline.timeout(self.connect_timeout, self.timeout)
            try:
                response = client.send(client.build_request("POST", self.url, json=body, timeout=timeout), stream=True)
            except httpx.TransportError as exc:
                error: RemoteError = self._call_error(exc, deadline, "is unreachable")
                cause = exc
            else:
                log.debug("POST %s attempt %d: HTTP %d", self.url, attempts[0] + 1, response.status_code)
                if response.status_code == 200:
                    if not read_body:
                        return response
                    try:
                        with deadline.watch(response):
                            response.read()
                        return response
                    except httpx.TransportError as exc:
                        error, cause = self._call_error(exc, deadline, "dropped the connection mid-answer"), exc
                    except httpx.HTTPError as exc:  # undecodable body (bad gzip, ...): retrying will not help
                        raise self._translate(exc, what="answer") from exc
                    finally:
                        response.close()
                else:
                    with deadline.watch(response):  # an error body that drips is cut off too
                        error, retry_after = self._status_error(response)
                    cause = None
                    if not self._json_object_schema and use_json_object(body, str(error), self.where()):
                        self._json_object_schema = True  # and for every later request to this remote
                        continue
                    if response.status_code not in RETRY_STATUS:
                        raise error
            self._backoff(attempts, error, cause, deadline, retry_after)

    _json_object_schema = False  # the server takes a schema only as {"type": "json_object", "schema": ...}

    def _status_error(self, response) -> tuple[RemoteError, float | None]:
        status = response.status_code
        try:
            response.read()
            detail = error_detail(response.text)
        except Exception:  # the body of an error answer is only a hint
            detail = ""
        finally:
            response.close()
        detail = self.redact(detail)
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            sent = f"sent the API key from {self._key_source}" if self._key.get() else f"no API key was sent: ${self.api_key_env} is not set"
            return RemoteAuthError(f"{self.where()} rejected the credentials (HTTP {status}; {sent}){suffix}"), None
        if status in RETRY_STATUS:
            what = "is rate limiting" if status == 429 else "failed"
            return RemoteUnavailable(f"{self.where()} {what} (HTTP {status}){suffix}"), parse_retry_after(response.headers.get("retry-after"))
        return RemoteError(f"{self.where()} refused the request (HTTP {status}){suffix}"), None

    # ---- public API ------------------------------------------------------------------
    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        return self.chat([{"role": "user", "content": check_prompt(prompt)}], config, **overrides)

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        return self.stream_chat([{"role": "user", "content": check_prompt(prompt)}], config, **overrides)

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        """One non-streaming request. ``token_ids``/``probs`` are empty: servers do not send them."""
        return self._chat(check_messages(messages), resolve_config(config, overrides), None)

    def stream_chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        """Server-sent events, one :class:`TokenEvent` per content delta (``prob``/``entropy`` are NaN).

        The request is sent on the first ``next()``. Failures before the first event
        are retried like any request; after it they raise (the caller has the text).
        """
        msgs, cfg = check_messages(messages), resolve_config(config, overrides)
        return self._stream(self._body(msgs, cfg, stream=True), cfg, None)

    def until(self, at: float, why: str = "the caller's time limit") -> "RemoteUntil":
        """This remote with every call finished by ``at`` (a ``time.monotonic()`` time), or within
        ``deadline_s`` if that comes first: how a Router makes its total budget cover the remote.
        ``why`` names the limit in errors."""
        return RemoteUntil(self, (at, why))

    def _deadline(self, at: tuple[float, str] | None) -> Deadline:
        if at is None:
            return Deadline(self.deadline_s, why=f"deadline_s={self.deadline_s:g}")
        return Deadline(self.deadline_s, why=f"deadline_s={self.deadline_s:g}", at=at[0], at_why=at[1])

    def _chat(self, msgs: list[dict], cfg: GenerationConfig, at: tuple[float, str] | None) -> GenerationResult:
        t0 = time.perf_counter()
        response = self._open(self._body(msgs, cfg, stream=False), self._deadline(at), read_body=True)
        total = time.perf_counter() - t0
        try:
            data = parse_json(response.content)
        except ValueError:
            data = None
        text, finish, calls = message_of(self, data, response.text)
        usage = usage_counts(data.get("usage")) or {}
        text, stopped = limit_text(text, cfg.stop)  # a server that ignores stop: cut here
        sent = completion_tokens(usage)
        if not stopped and sent is not None and sent > cfg.max_tokens:
            raise RemoteProtocolError(
                f"{self.where()} ignored max_tokens={cfg.max_tokens}: it sent {sent} tokens; fix the server's "
                "settings, or stream (streams are cut by the client)"
            )
        timings = Timings(
            prompt_tokens=int(usage.get("prompt_tokens") or 0), ttft_s=total, total_s=total,
            decode_tokens=max(int(usage.get("completion_tokens") or 0) - 1, 0), decode_s=0.0,
        )
        fmt = cfg.response_format
        return GenerationResult(text, [], "stop" if stopped else _FINISH.get(finish, "eos"), [], [], timings,
                                parsed=None if fmt is None else parse_answer(fmt, text), tool_calls=calls)

    def _stream(self, body: dict[str, Any], cfg: GenerationConfig, at: tuple[float, str] | None) -> Iterator[TokenEvent]:
        import httpx

        attempts, deadline = [0], self._deadline(at)
        while True:
            t0 = time.perf_counter()
            response = self._open(body, deadline, read_body=False, attempts=attempts)
            timings, limits = Timings(), StreamLimits(cfg)
            index, t_prev, sofar, calls = 0, t0, [], []
            try:
                with deadline.watch(response):
                    for delta, finish, usage in chunks(self, response.iter_lines(), calls):
                        if deadline.passed():  # a transport whose socket the watchdog cannot reach
                            raise RemoteTimeout(f"{self.where()} {deadline.describe()}")
                        if usage:
                            timings.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        if not delta and not finish:
                            continue
                        now = time.perf_counter()
                        if index == 0:
                            timings.ttft_s = now - t0
                        else:
                            timings.token_latencies_s.append(now - t_prev)
                        t_prev = now
                        timings.decode_tokens, timings.decode_s, timings.total_s = index, now - t0 - timings.ttft_s, now - t0
                        text, done = limits.feed(delta, _FINISH.get(finish, "eos") if finish else None)
                        parsed = None
                        if cfg.response_format is not None:
                            sofar.append(text)
                            parsed = parse_answer(cfg.response_format, "".join(sofar)) if done else None
                        yield TokenEvent(index, -1, text, math.nan, math.nan, done, timings if done else None,
                                         parsed=parsed, tool_calls=(calls or None) if done else None)
                        index += 1
                        if done:  # the answer is complete, or a limit ended it: stop reading (closes the stream)
                            return
                raise RemoteUnavailable(f"{self.where()} ended the stream before the answer was complete")
            except httpx.TransportError as exc:
                error: RemoteError = self._call_error(exc, deadline, "dropped the stream")
                cause: BaseException | None = exc
            except httpx.HTTPError as exc:
                raise self._translate(exc, what="stream") from exc
            except (RemoteUnavailable, RemoteTimeout) as exc:
                error, cause = exc, None
            finally:
                response.close()
            if index > 0:  # the caller has text: no retry can take it back
                raise type(error)(f"{error} after {index} streamed token(s)") from cause
            self._backoff(attempts, error, cause, deadline)


class RemoteUntil:
    """A :class:`RemoteLLM` whose calls end by a fixed time (see :meth:`RemoteLLM.until`); closing it
    closes nothing (the RemoteLLM keeps its connections)."""

    kind = "decoder"
    backend = "remote"

    def __init__(self, remote: RemoteLLM, at: tuple[float, str]):
        self.remote, self.at = remote, at  # (time.monotonic() time, what the limit is)

    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        return self.chat([{"role": "user", "content": check_prompt(prompt)}], config, **overrides)

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        return self.stream_chat([{"role": "user", "content": check_prompt(prompt)}], config, **overrides)

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> GenerationResult:
        return self.remote._chat(check_messages(messages), resolve_config(config, overrides), self.at)

    def stream_chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> Iterator[TokenEvent]:
        msgs, cfg = check_messages(messages), resolve_config(config, overrides)
        return self.remote._stream(self.remote._body(msgs, cfg, stream=True), cfg, self.at)

    def close(self) -> None:
        pass


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
