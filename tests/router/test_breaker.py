"""The circuit breaker: its state machine on a hand-driven clock, then in the router against real servers."""

from __future__ import annotations

import threading

import pytest

from edgekit.errors import ConfigError
from edgekit.router import CircuitBreaker, Policy, Router
from edgekit.router.remote import RemoteLLM

Q = [{"role": "user", "content": "What is the chemical symbol for silver?"}]


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_n_consecutive_failures_half_opens_and_closes():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == "closed"
    b.record_success()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert b.allow()
        b.record_failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == pytest.approx(10)
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.2
    assert b.state == "half_open"
    assert b.allow()  # the one probe
    assert not b.allow()  # a second request while the probe is out goes local
    b.record_failure()  # the probe failed: open for another cool-down
    assert b.state == "open" and not b.allow()
    clock.now += 10
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.consecutive_failures == 0


def test_a_released_probe_lets_the_next_request_probe():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=1, clock=clock)
    b.allow()
    b.record_failure()
    clock.now += 1
    assert b.allow() and not b.allow()
    b.release()  # the probing request did not call the remote after all
    assert b.allow()


def test_only_one_probe_among_threads():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=1, cooldown_s=0, clock=clock)
    b.allow()
    b.record_failure()
    results = []
    threads = [threading.Thread(target=lambda: results.append(b.allow())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_bad_settings():
    with pytest.raises(ConfigError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ConfigError):
        CircuitBreaker(cooldown_s=-1)


@pytest.mark.slow
def test_router_stops_waiting_on_a_dead_remote_and_recovers(local_gguf, faulty):
    """Slow remote (30 s first byte): two timeouts open the breaker; then requests go local without
    touching the remote; after the cool-down one probe goes out; once the remote answers, it closes."""
    server = faulty(["slow"])
    remote = RemoteLLM(server.url, "faulty", timeout=0.3, max_retries=0)
    now = [0.0]  # the breaker's clock, moved by hand: no sleeping, no race with slow local generation
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=1.0, clock=lambda: now[0])
    router = Router(local_gguf, remote, Policy(threshold=1.0), breaker=breaker)  # every request wants the remote
    local_text = local_gguf.chat(Q, max_tokens=8).text

    for i in range(2):
        res = router.chat(Q, max_tokens=8)
        assert res.decision.tier == "local" and res.decision.degraded
        assert "RemoteTimeout" in res.decision.remote_error
        assert res.text == local_text
    assert breaker.state == "open" and len(server.seen) == 2

    res = router.chat(Q, max_tokens=8)
    assert len(server.seen) == 2  # the remote was not called at all, so no timeout was waited for
    assert res.decision.degraded and res.decision.breaker == "open"
    assert "circuit breaker is open" in res.decision.remote_error
    assert res.text == local_text

    now[0] += 1.1
    assert breaker.state == "half_open"
    res = router.chat(Q, max_tokens=8)  # the probe: still slow, so open again
    assert len(server.seen) == 3 and breaker.state == "open"

    server.set_plan(["ok"])
    now[0] += 1.1
    res = router.chat(Q, max_tokens=8)
    assert res.decision.tier == "remote" and not res.decision.degraded
    assert breaker.state == "closed" and len(server.seen) == 1
    stream = router.stream_chat(Q, max_tokens=8)
    assert "".join(e.text for e in stream) == res.text
    assert stream.decision.tier == "remote" and breaker.state == "closed"
