"""``GET /metrics``: Prometheus text format from prometheus-client, one registry per app.

Exposed (every name starts with ``edgekit_``):

* ``requests_total{endpoint,tier,trigger,outcome}``: requests by the tier that answered
  (``local``, ``remote``, ``none`` when none did), the router's trigger (``none`` when
  nothing sent it remote) and the outcome (``ok``, ``error``, ``cancelled``, ``rejected``
  for a 503, ``invalid`` for a 4xx before any tier ran);
* ``local_share``: answered generation requests served by the local tier, as a share;
* ``generated_tokens_total{tier}``;
* ``fallback_latency_seconds{trigger}``: for answers a Router sent remote, the time spent
  before the remote was asked (tokenizing, the local draft): what the fallback added;
* ``ttft_seconds{tier}`` (request received to first token out), ``tokens_per_second{tier}``
  (after the first token), ``request_duration_seconds{endpoint}``;
* ``queue_depth{lane}``, ``queue_depth_peak{lane}``, ``busy_slots{lane}``, ``slots{lane}``;
* ``breaker_state{state}``: 1 for the remote circuit breaker's current state (closed,
  half_open, open), 0 for the others; absent without a Router.

Nothing secret is a label or a value: no keys, no prompts, no remote URLs.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgekit.serve.workers import Dispatcher, Outcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
BREAKER_STATES = ("closed", "half_open", "open")


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, dispatcher: Dispatcher, breaker_state: Callable[[], str] | None = None):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("edgekit_requests", "Requests by endpoint, answering tier, router trigger and outcome.",
                                ["endpoint", "tier", "trigger", "outcome"], registry=r)
        self.tokens = Counter("edgekit_generated_tokens", "Tokens (remote: text chunks) sent to clients.", ["tier"], registry=r)
        self.fallback = Histogram("edgekit_fallback_latency_seconds",
                                  "Time a Router spent before asking the remote (tokenizing, local draft), per trigger.",
                                  ["trigger"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("edgekit_ttft_seconds", "Request received to first token sent.", ["tier"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tps = Histogram("edgekit_tokens_per_second", "Tokens per second after the first token.", ["tier"],
                             buckets=TPS_BUCKETS, registry=r)
        self.duration = Histogram("edgekit_request_duration_seconds", "Request received to answer complete.", ["endpoint"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._answered = {"local": 0, "remote": 0}
        Gauge("edgekit_local_share", "Share of answered generation requests served by the local tier.",
              registry=r).set_function(self._local_share)
        depth = Gauge("edgekit_queue_depth", "Requests waiting for a slot.", ["lane"], registry=r)
        peak = Gauge("edgekit_queue_depth_peak", "Most requests that waited for a slot at once since start.", ["lane"], registry=r)
        busy = Gauge("edgekit_busy_slots", "Slots answering a request now.", ["lane"], registry=r)
        size = Gauge("edgekit_slots", "Slots of the lane (local: replicas).", ["lane"], registry=r)
        for lane in dispatcher.lanes():
            depth.labels(lane.name).set_function(lambda lane=lane: lane.depth)
            peak.labels(lane.name).set_function(lambda lane=lane: lane.peak)
            busy.labels(lane.name).set_function(lambda lane=lane: lane.busy)
            size.labels(lane.name).set(lane.size)
        if breaker_state is not None:
            state = Gauge("edgekit_breaker_state", "1 for the remote circuit breaker's current state.", ["state"], registry=r)
            for name in BREAKER_STATES:
                state.labels(name).set_function(lambda name=name: 1.0 if breaker_state() == name else 0.0)

    def _local_share(self) -> float:
        total = self._answered["local"] + self._answered["remote"]
        return self._answered["local"] / total if total else 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def count(self, endpoint: str, outcome: str, tier: str = "none", trigger: str | None = None) -> None:
        self.requests.labels(endpoint, tier, trigger or "none", outcome).inc()

    def generation(self, endpoint: str, out: Outcome, outcome: str, ttft_s: float | None, decode_s: float, total_s: float) -> None:
        """Record one finished (or cut) generation request."""
        self.count(endpoint, outcome, out.tier, out.trigger)
        self.duration.labels(endpoint).observe(total_s)
        if out.completion_tokens:
            self.tokens.labels(out.tier).inc(out.completion_tokens)
        if outcome == "ok" and out.tier in self._answered:
            self._answered[out.tier] += 1
        if ttft_s is not None:
            self.ttft.labels(out.tier).observe(ttft_s)
        if out.completion_tokens > 1 and decode_s > 0:
            self.tps.labels(out.tier).observe((out.completion_tokens - 1) / decode_s)
        if out.tier == "remote" and out.trigger:
            self.fallback.labels(out.trigger).observe(out.local_s)


__all__ = ["ServeMetrics"]
