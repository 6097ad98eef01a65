"""The router: a local Model first, a remote LLM when the policy says so, one API for both.

``Router(local, remote, policy)`` is a :class:`~edgekit.runtimes.tier.Tier`, like the
Model and the remote it routes between. Each answer carries a
:class:`~edgekit.router.decision.Decision`: which tier answered, which trigger
(if any) sent the request to the remote, the local confidence summary and the
latencies. What happens to one request:

1. The prompt is tokenized once with the local tokenizer. If it does not fit the
   local context, the remote is asked without a local try (``context_overflow``).
2. The local model generates into a buffer: the first ``first_k`` tokens when the
   low-confidence trigger is on (else the first token). Local failures of the
   policy's types (a token with a non-finite probability counts as one) and the
   time budgets move the request to the remote.
3. The buffered draft is scored; a low score discards it and asks the remote.
   Nothing of a discarded draft ever reaches the caller, streaming or not.
4. Otherwise the draft is released and the local model goes on. ``generate``
   buffers the whole answer, so the total-time budget and local failures can
   still move it to the remote; ``stream`` hands tokens out as they come, so
   after the first release the local answer is final.
5. The remote is called through a circuit breaker. When it is down (or the
   breaker is open) and the local model can answer, the local answer is given,
   marked ``degraded``; when neither can, :class:`FallbackExhausted` carries both causes.
   With ``total_budget_s`` the remote must be done when the budget ends (but gets at
   least ``remote_min_s``): a remote with an ``until`` method (RemoteLLM) is cut off
   there with RemoteTimeout; every RemoteLLM call has its own deadline anyway.

While the remote is asked, the local draft's generator stays suspended (holding
the local Model's lock) so a degraded answer continues where the draft stopped
instead of starting again.

Bookkeeping happens in one place each: the local tier's time in ``_next_local`` (and
tokenizing in ``_start``), the remote's time and the breaker's outcome in
:class:`_RemoteCall`, the caller's time in ``_release``, the totals in ``_finish``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from edgekit.errors import BackendError, ContextOverflowError, FallbackExhausted, RemoteError, RemoteUnavailable
from edgekit.router.breaker import CircuitBreaker
from edgekit.router.decision import Decision, RoutedRequest, RoutedResult, RoutedStream, describe_error
from edgekit.router.log import DecisionLog, decision_record
from edgekit.router.policy import Policy
from edgekit.runtimes.base import GenerationConfig, TokenEvent, check_prompt, collect, confidence_summary, resolve_config
from edgekit.runtimes.chat import check_messages
from edgekit.runtimes.tier import Tier

if TYPE_CHECKING:
    from edgekit.runtimes.base import Model

T = TypeVar("T")


class _RemoteCall:
    """One request's use of the remote tier, once the breaker allowed it.

    Every call through it is timed into ``decision.remote_s``; the breaker hears the outcome
    exactly once: ``settle()`` on success, a failure on the first RemoteError, and
    ``release()`` when the request stops using the remote without either (the caller closed
    the stream, or an error that is not the remote's).
    """

    def __init__(self, breaker: CircuitBreaker, decision: Decision, remote: Tier):
        self.breaker, self.decision, self.settled = breaker, decision, False
        self.remote = remote  # the remote tier, bounded by the request's budget when it has one

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        t = time.perf_counter()
        try:
            return fn(*args)
        except RemoteError as exc:
            if not self.settled:
                self.settled = True
                self.breaker.record_failure()
                self.decision.breaker = self.breaker.state
            self.decision.remote_error = describe_error(exc)
            raise
        finally:
            self.decision.remote_s += time.perf_counter() - t

    def settle(self) -> None:
        """The remote answered."""
        if not self.settled:
            self.settled = True
            self.breaker.record_success()
            self.decision.breaker = self.breaker.state

    def release(self) -> None:
        """Neither success nor failure: free a half-open breaker's probe slot (a no-op once settled)."""
        if not self.settled:
            self.settled = True
            self.breaker.release()


class Router:
    """Answer with the local model when it can, with the remote when the policy says so.

    ``local``: a decoder :class:`~edgekit.runtimes.base.Model`; ``remote``: any
    :class:`~edgekit.runtimes.tier.Tier`, usually a :class:`~edgekit.router.remote.RemoteLLM`
    (or None: local only, escalations are answered locally and marked degraded);
    ``policy``: the :class:`Policy`; ``breaker``: the remote's :class:`CircuitBreaker`
    (default: 3 failures, 30 s cool-down); ``decision_log``: a JSON Lines file, one line
    per request, prompts and answers only with ``log_prompts=True``.
    """

    kind = "decoder"
    backend = "router"

    def __init__(self, local: Model, remote: Tier | None = None, policy: Policy | None = None, *,
                 breaker: CircuitBreaker | None = None, decision_log=None, log_prompts: bool = False):
        local.require_decoder("route")
        if remote is not None and not isinstance(remote, Tier):
            raise TypeError(f"remote must be a Tier (a RemoteLLM, a Model or a Router), not {type(remote).__name__}")
        self.local = local
        self.remote = remote
        self.policy = policy if policy is not None else Policy()
        if not isinstance(self.policy, Policy):
            raise TypeError(f"policy must be an edgekit Policy, not {type(self.policy).__name__}")
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.log = decision_log if isinstance(decision_log, DecisionLog) or decision_log is None else DecisionLog(
            decision_log, include_prompts=log_prompts)

    # ---- the Tier API ---------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        return self.local.context_length

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def render_chat(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        return self.local.render_chat(messages, add_generation_prompt)

    def generate(self, prompt: str, config: GenerationConfig | None = None, **overrides: Any) -> RoutedResult:
        return self._generate(RoutedRequest("generate", check_prompt(prompt), None, resolve_config(config, overrides), False))

    def chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides: Any) -> RoutedResult:
        return self._generate(RoutedRequest("chat", None, check_messages(messages), resolve_config(config, overrides), False))

    def stream(self, prompt: str, config: GenerationConfig | None = None, **overrides: Any) -> RoutedStream:
        run = RoutedRequest("generate", check_prompt(prompt), None, resolve_config(config, overrides), True)
        return RoutedStream(self._stream(run), run.decision)

    def stream_chat(self, messages: Sequence[dict], config: GenerationConfig | None = None, **overrides: Any) -> RoutedStream:
        run = RoutedRequest("chat", None, check_messages(messages), resolve_config(config, overrides), True)
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
    def _start(self, run: RoutedRequest) -> str | None:
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

    def _next_local(self, run: RoutedRequest) -> TokenEvent | None:
        """The local draft's next event (None at its end); the time it takes is the local tier's."""
        t = time.perf_counter()
        try:
            return next(run.local_gen, None)
        finally:
            run.decision.local_s += time.perf_counter() - t

    def _pull(self, run: RoutedRequest, until: int | None) -> str | None:
        """Generate locally into the draft until it holds ``until`` events (None: to the end) or a trigger fires."""
        policy, d = self.policy, run.decision
        while not run.finished and (until is None or len(run.draft) < until):
            try:
                ev = self._next_local(run)
                if ev is not None and not math.isfinite(ev.prob):  # never confident: a broken answer
                    raise BackendError(f"the local model gave token {ev.index} a probability of {ev.prob} "
                                       "(not a finite number): its answer cannot be trusted")
            except Exception as exc:
                if not policy.falls_back_on(exc):
                    raise
                run.local_exc = exc
                d.local_error = d.reason = describe_error(exc)
                run.close_local()
                return "local_error"
            if ev is None:
                run.finished = True
                break
            run.draft.append(ev)
            elapsed = time.perf_counter() - run.t0
            if ev.finish_reason:
                run.finished = True
                if self._held(run) and ev.finish_reason not in ("stop", "tool_calls") and ev.parsed is None:
                    fmt = self._format(run)
                    d.reason = (f"the answer did not finish inside its {fmt.type} format ("
                                + ("max_tokens ran out)" if ev.finish_reason == "length" else "it does not parse)"))
                    return "constraint"
            if len(run.draft) == 1 and policy.ttft_budget_s is not None and elapsed > policy.ttft_budget_s:
                d.reason = f"first token after {elapsed:.3g} s > budget {policy.ttft_budget_s:g} s"
                return "ttft_budget"
            if not run.finished and policy.total_budget_s is not None and elapsed > policy.total_budget_s:
                d.reason = f"unfinished after {elapsed:.3g} s > budget {policy.total_budget_s:g} s"
                return "total_budget"
        return None

    def _resume(self, run: RoutedRequest) -> None:
        """Degraded: finish the suspended local draft (no more triggers: the remote is out)."""
        while not run.finished:
            ev = self._next_local(run)
            if ev is None:
                break
            run.draft.append(ev)
            run.finished = bool(ev.finish_reason)

    def _judge(self, run: RoutedRequest) -> str | None:
        """Score the buffered first tokens; 'low_confidence' when below the threshold."""
        policy, d = self.policy, run.decision
        head = run.draft[: policy.first_k]
        d.confidence = confidence_summary([e.prob for e in head], [e.entropy for e in head])
        if not policy.low_confidence:
            d.reason = "low-confidence trigger off"
            return None
        d.score, d.threshold = policy.score([e.prob for e in head]), policy.threshold
        low = not d.score >= policy.threshold  # a NaN score is never confident
        d.reason = f"{policy.metric_name()} = {d.score:.3f} {'<' if low else '>='} {policy.threshold:.3f}"
        return "low_confidence" if low else None

    @staticmethod
    def _format(run: RoutedRequest):
        """The format the answer is held to: the response_format, or the grammar of the tools."""
        tools = run.cfg.tools
        return run.cfg.response_format or (tools.format if tools is not None else None)

    def _held(self, run: RoutedRequest) -> bool:
        """Whether the local answer is judged whole by the constraint trigger (and so buffered whole)."""
        return self.policy.constraint and self._format(run) is not None

    def _first_phase(self, run: RoutedRequest) -> str | None:
        trigger = self._start(run)
        if trigger is None:
            until = None if self._held(run) else self.policy.first_k if self.policy.low_confidence else 1
            trigger = self._pull(run, until)
        if trigger is None:
            trigger = self._judge(run)
        run.decision.trigger = trigger
        return trigger

    def _open_remote(self, run: RoutedRequest) -> _RemoteCall | None:
        """A call of the remote when there is one and the breaker allows it; else None, after
        :meth:`_fall_back_locally` (which raises when the local tier cannot answer)."""
        d = run.decision
        d.breaker = self.breaker.state
        if self.remote is None:
            error = RemoteUnavailable("no remote tier is configured")
        elif not self.breaker.allow():
            d.breaker = "open"
            error = RemoteUnavailable(
                f"the circuit breaker is open after {self.breaker.consecutive_failures} consecutive remote failures "
                f"(next try in {self.breaker.retry_in():.1f} s)"
            )
        else:
            return _RemoteCall(self.breaker, d, self._remote_for(run))
        d.remote_error = describe_error(error)
        self._fall_back_locally(run, error)
        return None

    def _remote_for(self, run: RoutedRequest) -> Tier:
        """The remote, bounded by the total budget when there is one (see the module docstring, step 5)."""
        budget, until = self.policy.total_budget_s, getattr(self.remote, "until", None)
        if budget is None or until is None:
            return self.remote
        # the request's clock is perf_counter; a RemoteLLM's deadlines are on the monotonic clock
        left = max(budget - (time.perf_counter() - run.t0), self.policy.remote_min_s)
        return until(time.monotonic() + left, "the router's total_budget_s")

    def _fall_back_locally(self, run: RoutedRequest, exc: RemoteError) -> None:
        """The remote cannot answer: mark the local answer degraded, or raise when it cannot be given."""
        if run.local_gen is None and not run.finished:  # context overflow or a local failure: nobody can answer
            raise self._both_failed(run, exc) from exc
        if not self.policy.degrade:
            raise exc
        run.decision.degraded = True
        run.decision.tier = "local"

    @staticmethod
    def _both_failed(run: RoutedRequest, exc: RemoteError) -> FallbackExhausted:
        local = run.local_exc
        return FallbackExhausted(
            f"both tiers failed: local: {describe_error(local) if local else 'not tried'}; remote: {run.decision.remote_error}",
            local_error=local, remote_error=exc,
        )

    def _finish(self, run: RoutedRequest) -> None:
        d = run.decision
        d.total_s = time.perf_counter() - run.t0
        d.overhead_s = max(0.0, d.total_s - d.local_s - d.remote_s - run.caller_s)
        if self.log is not None:
            self.log.write(decision_record(run, self.policy, self.log.include_prompts))

    # ---- generate: everything buffered ------------------------------------------------------
    def _generate(self, run: RoutedRequest) -> RoutedResult:
        d = run.decision
        try:
            trigger = self._first_phase(run)
            if trigger is None:
                trigger = d.trigger = self._pull(run, None)
            if trigger is not None:
                answer = self._ask_remote(run)
                if answer is not None:
                    return answer
                self._resume(run)
            res = collect(iter(run.draft))
            run.finish_reason, run.n_out, run.text = res.finish_reason, len(res.token_ids), [res.text]
            return RoutedResult(res.text, res.token_ids, res.finish_reason, res.probs, res.entropies, res.timings,
                                res.constrained, res.parsed, res.tool_calls, decision=d)
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            run.close_local()
            self._finish(run)

    def _ask_remote(self, run: RoutedRequest) -> RoutedResult | None:
        """The remote's whole answer, or None when the local tier answers instead (degraded)."""
        call = self._open_remote(run)
        if call is None:
            return None
        try:
            result = call(call.remote.chat, run.remote_messages(), run.cfg)
        except RemoteError as exc:
            self._fall_back_locally(run, exc)
            return None
        else:
            call.settle()
        finally:
            call.release()
        run.close_local()
        d = run.decision
        d.tier = "remote"
        run.finish_reason, run.text = result.finish_reason, [result.text]
        run.n_out = result.timings.decode_tokens + 1 if result.text else 0  # the server's usage
        return RoutedResult(result.text, [], result.finish_reason, [], [], result.timings, parsed=result.parsed,
                            tool_calls=result.tool_calls, decision=d)

    # ---- stream: released after the first tokens ----------------------------------------------
    def _stream(self, run: RoutedRequest) -> Iterator[TokenEvent]:
        d = run.decision
        call = remote_events = None
        try:
            if self._first_phase(run) is not None and (call := self._open_remote(run)) is not None:
                try:
                    remote_events = call(call.remote.stream_chat, run.remote_messages(), run.cfg)
                    first = call(next, remote_events, None)
                except RemoteError as exc:
                    self._fall_back_locally(run, exc)
                else:
                    run.close_local()
                    d.tier = "remote"
                    yield from self._relay_remote(run, call, first, remote_events)
                    return
            # the local answer: release the draft, then pass the rest through
            for ev in run.draft:
                yield from self._release(run, ev)
            while not run.finished:
                try:
                    ev = self._next_local(run)
                except Exception as exc:
                    d.local_error = describe_error(exc)
                    raise
                if ev is None:
                    break
                run.finished = bool(ev.finish_reason)
                yield from self._release(run, ev)
        except BaseException as exc:
            run.error = exc
            raise
        finally:
            if call is not None:  # the caller stopped while the remote was answering: neither success nor failure
                call.release()
            if remote_events is not None:
                remote_events.close()
            run.close_local()
            self._finish(run)

    def _release(self, run: RoutedRequest, ev: TokenEvent) -> Iterator[TokenEvent]:
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

    def _relay_remote(self, run: RoutedRequest, call: _RemoteCall, first: TokenEvent | None,
                      events: Iterator[TokenEvent]) -> Iterator[TokenEvent]:
        ev = first
        while ev is not None:
            yield from self._release(run, ev)
            if ev.finish_reason:
                break
            try:
                ev = call(next, events, None)
            except RemoteError as exc:
                if run.local_exc is not None:
                    raise self._both_failed(run, exc) from exc
                raise
        call.settle()


__all__ = ["Router"]
