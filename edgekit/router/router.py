"""The router: a local Model first, a remote LLM when the policy says so, one API for both.

``Router(local, remote, policy)`` has the generate/stream/chat/stream_chat API of a
Model. Each answer carries a :class:`Decision`: which tier answered, which trigger
(if any) sent the request to the remote, the local confidence summary and the
latencies. What happens to one request:

1. The prompt is tokenized once with the local tokenizer. If it does not fit the
   local context, the remote is asked without a local try (``context_overflow``).
2. The local model generates into a buffer: the first ``first_k`` tokens when the
   low-confidence trigger is on (else the first token). Local failures of the
   policy's types and the time budgets move the request to the remote.
3. The buffered draft is scored; a low score discards it and asks the remote.
   Nothing of a discarded draft ever reaches the caller, streaming or not.
4. Otherwise the draft is released and the local model goes on. ``generate``
   buffers the whole answer, so the total-time budget and local failures can
   still move it to the remote; ``stream`` hands tokens out as they come, so
   after the first release the local answer is final.
5. The remote is called through a circuit breaker. When it is down (or the
   breaker is open) and the local model can answer, the local answer is given,
   marked ``degraded``; when neither can, :class:`FallbackExhausted` carries both causes.

While the remote is asked, the local draft's generator stays suspended (holding
the local Model's lock) so a degraded answer continues where the draft stopped
instead of starting again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from edgekit.errors import ContextOverflowError, FallbackExhausted, RemoteError, RemoteUnavailable
from edgekit.router.breaker import CircuitBreaker
from edgekit.router.log import DecisionLog, decision_record
from edgekit.router.policy import Policy
from edgekit.runtimes.base import (
    GenerationConfig, GenerationResult, TokenEvent, _config, check_prompt, collect, confidence_summary,
)
from edgekit.runtimes.chat import check_messages


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


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Run:
    """The state of one request while it is routed."""

    def __init__(self, api: str, prompt: str | None, messages: list[dict] | None, cfg: GenerationConfig, stream: bool):
        self.api, self.prompt, self.messages, self.cfg, self.stream = api, prompt, messages, cfg, stream
        self.decision = Decision()
        self.t0 = time.perf_counter()
        self.draft: list[TokenEvent] = []
        self.local_gen: Iterator[TokenEvent] | None = None
        self.finished = False
        self.local_exc: BaseException | None = None
        self.caller_s = 0.0
        self.n_out = 0
        self.finish_reason: str | None = None
        self.text: list[str] | None = None
        self.error: BaseException | None = None

    def remote_messages(self) -> list[dict]:
        return self.messages if self.messages is not None else [{"role": "user", "content": self.prompt}]

    def close_local(self) -> None:
        if self.local_gen is not None:
            self.local_gen.close()
            self.local_gen = None


class Router:
    """Answer with the local model when it can, with the remote when the policy says so.

    ``local``: a decoder :class:`~edgekit.runtimes.base.Model`; ``remote``: a
    :class:`~edgekit.runtimes.remote.RemoteLLM` (or None: local only, escalations are
    answered locally and marked degraded); ``policy``: the :class:`Policy`;
    ``breaker``: the remote's :class:`CircuitBreaker` (default: 3 failures, 30 s cool-down);
    ``decision_log``: a JSON Lines file, one line per request, prompts and answers
    only with ``log_prompts=True``.
    """

    kind = "decoder"
    backend = "router"

    def __init__(self, local, remote=None, policy: Policy | None = None, *, breaker: CircuitBreaker | None = None,
                 decision_log=None, log_prompts: bool = False):
        local._require_decoder("route")
        self.local = local
        self.remote = remote
        self.policy = policy if policy is not None else Policy()
        if not isinstance(self.policy, Policy):
            raise TypeError(f"policy must be an edgekit Policy, not {type(self.policy).__name__}")
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.log = decision_log if isinstance(decision_log, DecisionLog) or decision_log is None else DecisionLog(
            decision_log, include_prompts=log_prompts)

    # ---- the Model API ------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self.local.context_length

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        return self.local.render_chat(messages, add_generation_prompt)

    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> RoutedResult:
        return self._generate(_Run("generate", check_prompt(prompt), None, _config(config, overrides), False))

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> RoutedResult:
        return self._generate(_Run("chat", None, check_messages(messages), _config(config, overrides), False))

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides) -> RoutedStream:
        run = _Run("generate", check_prompt(prompt), None, _config(config, overrides), True)
        return RoutedStream(self._stream(run), run.decision)

    def stream_chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides) -> RoutedStream:
        run = _Run("chat", None, check_messages(messages), _config(config, overrides), True)
        return RoutedStream(self._stream(run), run.decision)

    def close(self) -> None:
        """Close both tiers."""
        self.local.close()
        if self.remote is not None:
            self.remote.close()

    def __enter__(self) -> "Router":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Router local={self.local!r} remote={self.remote!r} breaker={self.breaker.state}>"

    # ---- steps shared by generate and stream -----------------------------------------------
    def _start(self, run: _Run) -> str | None:
        """Tokenize, check the context, start the local draft. Returns a trigger or None."""
        local, policy, d = self.local, self.policy, run.decision
        t = time.perf_counter()
        if run.messages is not None:
            ids = local.tokenize(local.render_chat(run.messages), add_special=False)
        else:
            ids = local.tokenize(run.prompt, add_special=True)
        d.local_s += time.perf_counter() - t  # tokenizing is the local tier's work (Model.chat does it too)
        d.prompt_tokens = len(ids)
        try:
            local.check_context(len(ids))
        except ContextOverflowError as exc:
            if not policy.context_overflow:
                raise
            run.local_exc = exc
            d.reason = f"the prompt is {len(ids)} tokens, the local context {local.context_length}"
            return "context_overflow"
        run.local_gen = local.stream_ids(ids, run.cfg)
        return None

    def _pull(self, run: _Run, until: int | None) -> str | None:
        """Generate locally into the draft until it holds ``until`` events (None: to the end) or a trigger fires."""
        policy, d = self.policy, run.decision
        while not run.finished and (until is None or len(run.draft) < until):
            t = time.perf_counter()
            try:
                ev = next(run.local_gen)
            except StopIteration:
                run.finished = True
                break
            except Exception as exc:
                d.local_s += time.perf_counter() - t
                if not policy.falls_back_on(exc):
                    raise
                run.local_exc = exc
                d.local_error = _describe(exc)
                d.reason = d.local_error
                run.close_local()
                return "local_error"
            now = time.perf_counter()
            d.local_s += now - t
            run.draft.append(ev)
            elapsed = now - run.t0
            if ev.finish_reason:
                run.finished = True
            if len(run.draft) == 1 and policy.ttft_budget_s is not None and elapsed > policy.ttft_budget_s:
                d.reason = f"first token after {elapsed:.3g} s > budget {policy.ttft_budget_s:g} s"
                return "ttft_budget"
            if not run.finished and policy.total_budget_s is not None and elapsed > policy.total_budget_s:
                d.reason = f"unfinished after {elapsed:.3g} s > budget {policy.total_budget_s:g} s"
                return "total_budget"
        return None

    def _judge(self, run: _Run) -> str | None:
        """Score the buffered first tokens; 'low_confidence' when below the threshold."""
        policy, d = self.policy, run.decision
        head = run.draft[: policy.first_k]
        d.confidence = confidence_summary([e.prob for e in head], [e.entropy for e in head])
        if not policy.low_confidence:
            d.reason = "low-confidence trigger off"
            return None
        d.score, d.threshold = policy.score([e.prob for e in head]), policy.threshold
        low = d.score < policy.threshold
        d.reason = f"{policy.metric_name()} = {d.score:.3f} {'<' if low else '>='} {policy.threshold:.3f}"
        return "low_confidence" if low else None

    def _first_phase(self, run: _Run) -> str | None:
        trigger = self._start(run)
        if trigger is None:
            trigger = self._pull(run, self.policy.first_k if self.policy.low_confidence else 1)
        if trigger is None:
            trigger = self._judge(run)
        run.decision.trigger = trigger
        return trigger

    def _remote_allowed(self, run: _Run) -> RemoteError | None:
        """None when the remote may be called, else the reason it may not."""
        d = run.decision
        d.breaker = self.breaker.state
        if self.remote is None:
            return RemoteUnavailable("no remote tier is configured")
        if not self.breaker.allow():
            d.breaker = "open"
            return RemoteUnavailable(
                f"the circuit breaker is open after {self.breaker.consecutive_failures} consecutive remote failures "
                f"(next try in {self.breaker.retry_in():.1f} s)"
            )
        return None

    def _remote_failed(self, run: _Run, exc: RemoteError, *, counted: bool = True) -> None:
        """Record a remote failure; raise when the local tier cannot answer instead."""
        d = run.decision
        if counted:
            self.breaker.record_failure()
            d.breaker = self.breaker.state
        d.remote_error = _describe(exc)
        if run.local_gen is None and not run.finished:  # context overflow or a local failure: nobody can answer
            local = run.local_exc
            raise FallbackExhausted(
                f"both tiers failed: local: {_describe(local) if local else 'not tried'}; remote: {d.remote_error}",
                local_error=local, remote_error=exc,
            ) from exc
        if not self.policy.degrade:
            raise exc
        d.degraded = True
        d.tier = "local"

    def _finish(self, run: _Run) -> None:
        d = run.decision
        d.total_s = time.perf_counter() - run.t0
        d.overhead_s = max(0.0, d.total_s - d.local_s - d.remote_s - run.caller_s)
        if self.log is not None:
            self.log.write(decision_record(run, self.policy, self.log.include_prompts))

    # ---- generate: everything buffered ------------------------------------------------------
    def _generate(self, run: _Run) -> RoutedResult:
        d = run.decision
        try:
            trigger = self._first_phase(run)
            if trigger is None:
                trigger = d.trigger = self._pull(run, None)
            if trigger is not None:
                unavailable = self._remote_allowed(run)
                if unavailable is None:
                    t = time.perf_counter()
                    try:
                        result = self.remote.chat(run.remote_messages(), run.cfg)
                    except RemoteError as exc:
                        d.remote_s += time.perf_counter() - t
                        self._remote_failed(run, exc)
                    except BaseException:
                        self.breaker.release()
                        raise
                    else:
                        d.remote_s += time.perf_counter() - t
                        self.breaker.record_success()
                        d.breaker = self.breaker.state
                        run.close_local()
                        d.tier = "remote"
                        run.finish_reason, run.text = result.finish_reason, [result.text]
                        run.n_out = result.timings.decode_tokens + 1 if result.text else 0  # the server's usage
                        return RoutedResult(result.text, [], result.finish_reason, [], [], result.timings, d)
                else:
                    self._remote_failed(run, unavailable, counted=False)
                self._resume(run)
            res = collect(iter(run.draft))
            run.finish_reason, run.n_out, run.text = res.finish_reason, len(res.token_ids), [res.text]
            return RoutedResult(res.text, res.token_ids, res.finish_reason, res.probs, res.entropies, res.timings, d)
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            run.close_local()
            self._finish(run)

    def _resume(self, run: _Run) -> None:
        """Degraded: finish the suspended local draft (no more triggers: the remote is out)."""
        d = run.decision
        while not run.finished:
            t = time.perf_counter()
            try:
                ev = next(run.local_gen)
            except StopIteration:
                break
            finally:
                d.local_s += time.perf_counter() - t
            run.draft.append(ev)
            run.finished = bool(ev.finish_reason)

    # ---- stream: released after the first tokens ----------------------------------------------
    def _stream(self, run: _Run) -> Iterator[TokenEvent]:
        d = run.decision
        remote_events = None
        allowed = False
        try:
            trigger = self._first_phase(run)
            if trigger is not None:
                unavailable = self._remote_allowed(run)
                if unavailable is None:
                    allowed = True
                    t = time.perf_counter()
                    try:
                        remote_events = self.remote.stream_chat(run.remote_messages(), run.cfg)
                        first = next(remote_events, None)
                    except RemoteError as exc:
                        d.remote_s += time.perf_counter() - t
                        allowed = False
                        self._remote_failed(run, exc)
                    else:
                        d.remote_s += time.perf_counter() - t
                        run.close_local()
                        d.tier = "remote"
                        yield from self._relay_remote(run, first, remote_events)
                        allowed = False
                        return
                else:
                    self._remote_failed(run, unavailable, counted=False)
            # the local answer: release the draft, then pass the rest through
            for ev in run.draft:
                yield from self._release(run, ev)
            while not run.finished:
                t = time.perf_counter()
                try:
                    ev = next(run.local_gen)
                except StopIteration:
                    break
                except Exception as exc:
                    d.local_error = _describe(exc)
                    raise
                finally:
                    d.local_s += time.perf_counter() - t
                run.finished = bool(ev.finish_reason)
                yield from self._release(run, ev)
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            if allowed:  # the caller stopped while the remote was answering: neither success nor failure
                self.breaker.release()
            if remote_events is not None:
                remote_events.close()
            run.close_local()
            self._finish(run)

    def _release(self, run: _Run, ev: TokenEvent) -> Iterator[TokenEvent]:
        d = run.decision
        if d.ttft_s is None:
            d.ttft_s = time.perf_counter() - run.t0
        run.n_out += 1
        if ev.finish_reason:
            run.finish_reason = ev.finish_reason
        if self.log is not None and self.log.include_prompts:
            if run.text is None:
                run.text = []
            run.text.append(ev.text)
        t = time.perf_counter()
        yield ev
        run.caller_s += time.perf_counter() - t

    def _relay_remote(self, run: _Run, first: TokenEvent | None, events: Iterator[TokenEvent]) -> Iterator[TokenEvent]:
        d = run.decision
        ev = first
        while ev is not None:
            yield from self._release(run, ev)
            if ev.finish_reason:
                break
            t = time.perf_counter()
            try:
                ev = next(events, None)
            except RemoteError as exc:
                d.remote_s += time.perf_counter() - t
                self.breaker.record_failure()
                d.breaker = self.breaker.state
                d.remote_error = _describe(exc)
                if run.local_exc is not None:
                    raise FallbackExhausted(
                        f"both tiers failed: local: {_describe(run.local_exc)}; remote: {d.remote_error}",
                        local_error=run.local_exc, remote_error=exc,
                    ) from exc
                raise
            d.remote_s += time.perf_counter() - t
        self.breaker.record_success()
        d.breaker = self.breaker.state


__all__ = ["Router", "Decision", "RoutedResult", "RoutedStream"]
