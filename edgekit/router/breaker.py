"""A circuit breaker around the remote tier.

Why: when the remote is down, every request that wants it would otherwise wait
for connect/read timeouts and retries (seconds each) before answering locally.
After ``failure_threshold`` consecutive failures the breaker *opens*: requests
skip the remote at once and the router answers locally (marked degraded).
After ``cooldown_s`` it turns *half-open* and lets one request through as a
probe: success closes it, failure opens it again for another cool-down.

The clock is injectable (``clock=``) so that the state machine can be driven
without sleeping; the router uses ``time.monotonic``.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Literal

from edgekit.errors import ConfigError, is_int

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe. ``allow()`` before calling the remote, then ``record_success()`` or ``record_failure()``."""

    def __init__(self, failure_threshold: int = 3, cooldown_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic):
        if not is_int(failure_threshold, 1):
            raise ConfigError(f"failure_threshold must be an integer >= 1, got {failure_threshold!r}")
        if not isinstance(cooldown_s, (int, float)) or isinstance(cooldown_s, bool) or not cooldown_s >= 0:
            raise ConfigError(f"cooldown_s must be a number >= 0, got {cooldown_s!r}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False  # a half-open probe is in flight

    @property
    def state(self) -> State:
        """The state now (an open breaker whose cool-down is over reads as half-open)."""
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
                return "half_open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        with self._lock:
            if self._state != "open":
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May this request call the remote? While half-open only one probe at a time is let through."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if self._clock() - self._opened_at < self.cooldown_s:
                    return False
                self._state = "half_open"
                self._probe_out = False
            if self._probe_out:
                return False
            self._probe_out = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._state = "closed"
            self._failures = 0
            self._probe_out = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probe_out = False
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                self._state = "open"
                self._opened_at = self._clock()

    def release(self) -> None:
        """A request that was allowed did not call the remote after all: free the half-open probe slot."""
        with self._lock:
            self._probe_out = False

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={self._failures}/{self.failure_threshold} cooldown={self.cooldown_s:g}s>"
