"""What the router decided for one request, and the state it keeps while deciding.

:class:`Decision` is the record every routed answer carries (``result.decision``,
``stream.decision``) and the decision log writes: which tier answered, the trigger
that sent the request to the remote (if any), the local confidence summary and the
latencies. :class:`RoutedResult` and :class:`RoutedStream` are what the router's
generate/chat and stream/stream_chat return. :class:`RoutedRequest` is the router's
working state for one request, which the decision log reads when it is finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from edgekit.runtimes.base import GenerationConfig, GenerationResult, TokenEvent


@dataclass
class Decision:
    """Which tier answered a request and why. ``trigger`` is what sent it to the remote (None: nothing)."""

    tier: str = "local"
    trigger: str | None = None
    degraded: bool = False
    reason: str = ""
    score: float | None = None
    threshold: float | None = None
    confidence: dict[str, float] | None = None
    prompt_tokens: int | None = None
    local_s: float = 0.0
    remote_s: float = 0.0
    ttft_s: float | None = None
    total_s: float = 0.0
    overhead_s: float = 0.0
    local_error: str | None = None
    remote_error: str | None = None
    breaker: str = "closed"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def line(self) -> str:
        """One human line: ``tier (trigger: reason) | confidence | latencies``."""
        head = self.tier + (" (DEGRADED)" if self.degraded else "")
        head += f" [{self.trigger}: {self.reason}]" if self.trigger else f" [{self.reason}]" if self.reason else ""
        parts = [head]
        if self.remote_error and self.degraded:
            parts.append(f"remote failed: {self.remote_error}")
        if self.confidence and self.confidence.get("tokens"):
            c = self.confidence
            parts.append(
                f"confidence over {c['tokens']} tokens: min {c['min_prob']:.2f} p10 {c['p10_prob']:.2f} "
                f"mean {c['mean_prob']:.2f} entropy {c['mean_entropy']:.2f}"
            )
        lat = [f"local {self.local_s:.2f} s", f"remote {self.remote_s:.2f} s"]
        if self.ttft_s is not None:
            lat.append(f"first token {self.ttft_s:.2f} s")
        lat.append(f"total {self.total_s:.2f} s")
        parts.append(", ".join(lat))
        return " | ".join(parts)


@dataclass
class RoutedResult(GenerationResult):
    """A :class:`GenerationResult` with the routing :class:`Decision` (remote answers have no token ids or probs)."""

    decision: Decision | None = None


class RoutedStream:
    """An iterator of :class:`TokenEvent` with the request's :class:`Decision` (complete once exhausted).

    Remote tokens have ``token_id`` -1 and NaN ``prob``/``entropy``. Close it (or use ``with``)
    to stop early: that frees the local model and the connection.
    """

    def __init__(self, events: Iterator[TokenEvent], decision: Decision):
        self._events = events
        self.decision = decision

    def __iter__(self) -> "RoutedStream":
        return self

    def __next__(self) -> TokenEvent:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> "RoutedStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe_error(exc: BaseException) -> str:
    """``Type: first line of the message``, as decisions and the log record errors."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(eq=False)
class RoutedRequest:
    """One request while it is routed: its input, the local draft, the decision, the outcome.

    ``api`` is "generate" or "chat" (``prompt`` or ``messages`` is set); ``draft`` holds the
    local events generated so far; ``local_gen`` is the suspended local generator (None once
    closed); ``caller_s`` is the time spent in the caller between streamed events.
    """

    api: str
    prompt: str | None
    messages: list[dict] | None
    cfg: GenerationConfig
    stream: bool
    decision: Decision = field(default_factory=Decision)
    t0: float = field(default_factory=time.perf_counter)
    draft: list[TokenEvent] = field(default_factory=list)
    local_gen: Iterator[TokenEvent] | None = None
    finished: bool = False
    local_exc: BaseException | None = None
    caller_s: float = 0.0
    n_out: int = 0
    finish_reason: str | None = None
    text: list[str] | None = None
    error: BaseException | None = None

    def remote_messages(self) -> list[dict]:
        """What the remote is sent: the messages, or the prompt as one user message."""
        return self.messages if self.messages is not None else [{"role": "user", "content": self.prompt}]

    def close_local(self) -> None:
        """Stop the local generator (frees the local model's lock)."""
        if self.local_gen is not None:
            self.local_gen.close()
            self.local_gen = None


__all__ = ["Decision", "RoutedResult", "RoutedStream", "RoutedRequest", "describe_error"]
