"""The limits of one remote call, enforced by the client: a deadline, ``max_tokens`` and stop strings.

A server is not trusted to keep them. httpx's read timeout restarts with every byte,
so a server that sends one SSE chunk every few seconds would hold a call forever; a
server that ignores ``max_tokens`` or ``stop`` streams on past them. So:

* :class:`Deadline`: the moment (``time.monotonic()``) by which a call must be finished,
  retries and their waits included. Every wait of httpx is capped by what is left of it,
  and while an answer is being read a watchdog timer shuts the connection's socket down
  when the deadline passes, which wakes the blocked read at once (the caller then sees
  :class:`~edgekit.errors.RemoteTimeout`).
* :class:`StreamLimits`: counts the content chunks of a stream as tokens (servers send
  one token per chunk; a server that batches tokens is cut later, never earlier) and
  stops reading after ``max_tokens`` of them with finish ``"length"``; it holds back
  text that could begin a stop string, and ends the answer before one with ``"stop"``.
* :func:`limit_text`: the same stop strings on a whole (non-streamed) answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator

from edgekit.errors import is_int
from edgekit.runtimes.base import FinishReason, GenerationConfig
from edgekit.runtimes.text import StopScanner

_MIN_WAIT = 0.001  # httpx refuses a timeout of 0


class Deadline:
    """When one remote call must be finished: ``seconds`` from now, or ``at`` if that is sooner.

    ``why`` and ``at_why`` say where each limit comes from, for the error message
    (``"deadline_s=60"``, ``"the router's total_budget_s"``).
    """

    def __init__(self, seconds: float, *, why: str, at: float | None = None, at_why: str = "the caller's time limit"):
        now = time.monotonic()
        self.at = now + seconds if at is None else min(at, now + seconds)
        self.seconds = max(self.at - now, 0.0)
        self.why = why if at is None or at >= now + seconds else at_why
        self.fired = False

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.fired or self.left() <= 0

    def timeout(self, connect: float, read: float):
        """httpx timeouts for one request: each at most what is left of the deadline."""
        import httpx

        left = max(self.left(), _MIN_WAIT)
        return httpx.Timeout(min(read, left), connect=min(connect, left), pool=min(connect, left))

    def describe(self) -> str:
        if self.seconds <= 0:
            return f"was not asked: no time was left for it ({self.why})"
        return f"did not finish its answer within {self.seconds:.3g} s ({self.why})"

    @contextlib.contextmanager
    def watch(self, response) -> Iterator[None]:
        """While the block reads ``response``: when the deadline passes, shut its socket down (the read
        raises at once) and mark the deadline ``fired``. Without a socket to reach (another transport)
        the caller's own checks between chunks still end the call."""
        sock = _socket_of(response)
        timer = None
        if sock is not None:
            timer = threading.Timer(max(self.left(), 0.0), self._fire, args=(sock,))
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()

    def _fire(self, sock: socket.socket) -> None:
        self.fired = True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _socket_of(response) -> socket.socket | None:
    stream = getattr(response, "extensions", {}).get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a transport that does not expose its socket
        return None
    return sock if isinstance(sock, socket.socket) else None


class StreamLimits:
    """``max_tokens`` and ``stop`` applied to a stream of content deltas (see the module docstring)."""

    def __init__(self, cfg: GenerationConfig):
        self.max_tokens = cfg.max_tokens
        self.stops = StopScanner(cfg.stop)
        self.chunks = 0

    def feed(self, delta: str, finish: FinishReason | None) -> tuple[str, FinishReason | None]:
        """(text to hand out, the finish): ``finish`` is the server's unless a limit ended the answer first."""
        text = ""
        if delta:
            self.chunks += 1
            if self.chunks > self.max_tokens:  # the server ignores max_tokens: this chunk is one too many
                return self.stops.flush(), "length"
            text, hit = self.stops.feed(delta)
            if hit:
                return text, "stop"
        if finish:
            return text + self.stops.flush(), finish
        return text, None


def limit_text(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def completion_tokens(usage: dict[str, Any] | None) -> int | None:
    n = (usage or {}).get("completion_tokens")
    return n if is_int(n, 1) else None


__all__ = ["Deadline", "StreamLimits", "limit_text", "completion_tokens"]
