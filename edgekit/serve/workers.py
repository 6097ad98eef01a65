"""Who answers a request, and when: lanes with bounded lines, worker threads, cancellation, shutdown.

A Model answers one request at a time (its lock), and generation blocks, so each local
replica has one worker thread of its own; the event loop only waits. Three lanes, each a
set of slots and a bounded line of requests waiting for one:

* ``local``: one slot per replica (a Model, or a Router over its own Model);
* ``remote``: ``remote_concurrency`` slots, for requests that will not touch a local model:
  every request when the tier is a RemoteLLM, and, behind a Router, a prompt too long for
  the local context (the Router would send it remote without a local try). They run on
  threads of their own and never wait behind local requests;
* ``embed``: the embedding model.

A request that finds every slot of its lane busy and ``max_queue`` requests already
waiting gets :class:`Overloaded` (the server answers 503 with Retry-After).

A low-confidence fallback is decided only after a local draft, so it holds a local slot
for the draft; once the Router has the remote's first token it has released the local
model, and the rest of the remote answer is relayed from a thread of its own (a hand-off)
so that the replica takes the next request.

Tokens travel from the worker to the request's coroutine through an asyncio queue. A
cancelled job (client gone, shutdown) is noticed between two tokens: the worker closes the
tier's stream, which releases the Model's lock and writes the Router's decision record.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator

from edgekit.router.router import Router
from edgekit.runtimes.base import Model, TokenEvent
from edgekit.serve.protocol import GenRequest, Piece, clean


class Overloaded(Exception):
    """Every slot of a lane is busy and its line is full (or the server is shutting down)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(Exception):
    """The client closed the connection while its request waited."""


class Lane:
    """Slots and a bounded line of waiting requests. Used from the event loop's thread only."""

    def __init__(self, name: str, slots: list, max_queue: int, retry_after: int | None = None):
        self.name, self.size, self.max_queue, self.fixed_retry = name, len(slots), max_queue, retry_after
        self.free = collections.deque(slots)
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.peak = 0
        self.closed: str | None = None
        self.durations: collections.deque[float] = collections.deque(maxlen=64)

    @property
    def depth(self) -> int:
        return len(self.waiters)

    @property
    def busy(self) -> int:
        return self.size - len(self.free)

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the recent median time of a request times the line ahead, per slot."""
        if self.fixed_retry is not None:
            return self.fixed_retry
        typical = statistics.median(self.durations) if self.durations else 1.0
        return int(min(60, max(1, math.ceil(typical * (self.depth + 1) / max(1, self.size)))))

    async def acquire(self):
        if self.closed:
            raise Overloaded(self.closed, self.retry_after())
        if self.free and not self.waiters:
            return self.free.popleft()
        if len(self.waiters) >= self.max_queue:
            raise Overloaded(
                f"the {self.name} lane is full ({self.size} busy, {len(self.waiters)} waiting): retry later", self.retry_after()
            )
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.peak = max(self.peak, len(self.waiters))
        try:
            return await fut
        except BaseException:
            if fut in self.waiters:
                self.waiters.remove(fut)
            elif fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release(fut.result())  # handed a slot just as the waiter gave up: pass it on
            raise

    def release(self, slot, seconds: float | None = None) -> None:
        if seconds is not None:
            self.durations.append(seconds)
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(slot)
                return
        self.free.append(slot)

    def close(self, reason: str) -> None:
        """Refuse new requests and turn away those waiting (a server shutting down)."""
        self.closed = reason
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(Overloaded(reason, self.retry_after()))


@dataclass
class Outcome:
    """How a generation ended: what the server reports in the body, the headers and /metrics."""

    tier: str
    trigger: str | None
    degraded: bool
    decision: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: str | None = None
    text: str = ""
    pieces: list[Piece] = field(default_factory=list)
    cancelled: bool = False
    local_s: float = 0.0
    first_at: float | None = None  # perf_counter() when the first and the last token came
    last_at: float | None = None
    tool_calls: list[dict] | None = None  # the answer called tools (OpenAI's shape)


class Job:
    """One generation request between its coroutine and its worker thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, req: GenRequest):
        self.loop, self.req = loop, req
        self.items: asyncio.Queue = asyncio.Queue()
        self.cancel = threading.Event()
        self.finished = threading.Event()  # the worker is done with the tier
        self.reason = "cancelled by the client"

    def put(self, item: tuple) -> None:
        try:
            self.loop.call_soon_threadsafe(self.items.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody listens any more
            pass

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()


class _Pump:
    """Moves one job's tokens from the tier's stream to the job's queue (in a worker thread)."""

    def __init__(self, job: Job, model: Model | None, kind: str):
        self.job, self.model, self.kind = job, model, kind
        self.n, self.pieces = 0, []
        self.head: dict[str, Any] | None = None
        self.finish = None
        self.timings = None
        self.tool_calls = None
        self.cancelled = False
        self.first_at = self.last_at = None

    def piece(self, ev: TokenEvent) -> Piece:
        lp = token = None
        if self.job.req.logprobs and ev.token_id >= 0 and ev.prob == ev.prob:
            lp = max(math.log(ev.prob), -9999.0) if ev.prob > 0 else -9999.0
            token = self.model.detokenize([ev.token_id]) if self.model is not None else ev.text
        return Piece(ev.text, lp, token, ev.finish_reason)

    def run(self, events: Iterator[TokenEvent], handoff: Callable[[Iterator[TokenEvent]], None] | None = None,
            closed: Callable[[], None] | None = None) -> bool:
        """Pump until the end, a cancel or a hand-off (True: ``events`` now belongs to ``handoff``).

        ``closed()`` runs once the stream is closed, before the job hears the end: the slot is
        free by the time the client has its answer and sends the next request.
        """
        job, decision, error = self.job, getattr(events, "decision", None), None
        try:
            for ev in events:
                if self.head is None:
                    self.head = _head(decision, self.kind)
                    if job.req.stream:
                        job.put(("head", self.head))
                p = self.piece(ev)
                self.n += 1
                self.last_at = time.perf_counter()
                self.first_at = self.first_at or self.last_at
                if job.req.stream:
                    job.put(("piece", p))
                else:
                    self.pieces.append(p)
                if ev.finish_reason:  # the last event: let the stream end by itself (a Router logs it complete)
                    self.finish, self.timings, self.tool_calls = ev.finish_reason, ev.timings, ev.tool_calls
                    continue
                if job.cancel.is_set():
                    self.cancelled = True
                    break
                if handoff is not None and decision is not None and decision.tier == "remote":
                    handoff(events)
                    return True
        except Exception as exc:
            error = exc
        try:
            events.close()  # frees the local model; a Router writes its decision record here
        except Exception as exc:
            error = error or exc
        if closed is not None:
            closed()
        job.put(("error", error) if error is not None else ("done", self.outcome(decision)))
        job.finished.set()
        return False

    def outcome(self, decision) -> Outcome:
        head = self.head or _head(decision, self.kind)
        if decision is not None:
            info = clean(decision.as_dict())
            prompt, local_s = decision.prompt_tokens or 0, decision.local_s
        else:
            t = self.timings
            info = {**head, "timings": clean(t.as_dict()) if t is not None else None}
            prompt, local_s = (t.prompt_tokens if t is not None else 0), 0.0
        return Outcome(head["tier"], head["trigger"], head["degraded"], info, prompt, self.n, self.finish,
                       "".join(p.text for p in self.pieces), self.pieces, self.cancelled, local_s, self.first_at, self.last_at,
                       self.tool_calls)


def _head(decision, kind: str) -> dict[str, Any]:
    if decision is None:
        return {"tier": kind, "trigger": None, "degraded": False}
    return {"tier": decision.tier, "trigger": decision.trigger, "degraded": decision.degraded}


@dataclass
class Replica:
    tier: Any
    model: Model | None
    executor: ThreadPoolExecutor


def served_name(tier) -> str:
    """The model id clients see by default: the artifact folder's name, a bare file's stem, a remote's model."""
    model = model_of(tier)
    if model is not None:
        p = model.path
        if p.suffix in (".gguf", ".onnx") and (model.manifest is None or p.parent.name in ("", ".")):
            return p.stem
        return p.parent.name if p.suffix in (".gguf", ".onnx") else p.name
    return str(getattr(tier, "model", None) or type(tier).__name__)


def model_of(tier) -> Model | None:
    if isinstance(tier, Model):
        return tier
    if isinstance(tier, Router):
        return tier.local
    return None


class Dispatcher:
    """The lanes over the tiers (one per replica) and the embedder, and every job in flight."""

    def __init__(self, tiers: list, embedder, *, max_queue: int, remote_concurrency: int, retry_after: int | None):
        self.tiers = tiers
        self.kind = ("router" if isinstance(tiers[0], Router) else "local" if isinstance(tiers[0], Model) else "remote") if tiers else None
        self.replicas = [Replica(t, model_of(t), ThreadPoolExecutor(1, thread_name_prefix=f"edgekit-local-{i}"))
                         for i, t in enumerate(tiers)] if self.kind in ("local", "router") else []
        self.local = Lane("local", list(self.replicas), max_queue, retry_after) if self.replicas else None
        self.remote = Lane("remote", list(range(remote_concurrency)), max_queue, retry_after) if self.kind in ("router", "remote") else None
        self.embedder = embedder
        self.embed_pool = ThreadPoolExecutor(1, thread_name_prefix="edgekit-embed") if embedder is not None else None
        self.embed = Lane("embed", [embedder], max_queue, retry_after) if embedder is not None else None
        self.jobs: set[Job] = set()
        self._rr = itertools.count()
        self.draining = False

    def lanes(self) -> list[Lane]:
        return [lane for lane in (self.local, self.remote, self.embed) if lane is not None]

    # ---- choosing a lane ------------------------------------------------------------------------
    async def lane_for(self, req: GenRequest) -> Lane:
        """The remote lane for what a Router would send remote without a local try (a prompt that overflows
        the local context) and for a remote tier; else the local lane."""
        if self.kind == "remote":
            return self.remote
        router = self.tiers[0]
        if self.kind != "router" or router.remote is None or not router.policy.context_overflow:
            return self.local
        text = router.render_chat(req.payload) if req.kind == "chat" else req.payload
        if len(text.encode("utf-8")) + 2 < router.context_length:  # a token is at least one byte (+ BOS): it fits
            return self.local
        n = len(await asyncio.to_thread(router.local.tokenize, text, add_special=req.kind != "chat"))
        return self.remote if n >= router.context_length else self.local

    # ---- running ---------------------------------------------------------------------------------
    async def start(self, req: GenRequest, receive: Callable[[], Awaitable[dict]]) -> tuple[Job, Lane]:
        """Wait for a slot (503 when the line is full; ClientGone when the client leaves), then start the job."""
        if self.draining:
            lane = self.local or self.remote
            raise Overloaded("the server is shutting down", lane.retry_after() if lane else 1)
        lane = await self.lane_for(req)
        slot = await until(lane.acquire(), receive)
        loop = asyncio.get_running_loop()
        job = Job(loop, req)
        self.jobs = {j for j in self.jobs if not j.finished.is_set()}
        self.jobs.add(job)
        t0 = time.perf_counter()
        freed = threading.Event()

        def free() -> None:  # once, from the worker: at the stream's close, a hand-off, or the worker's end
            if freed.is_set():
                return
            freed.set()
            try:
                loop.call_soon_threadsafe(lane.release, slot, time.perf_counter() - t0)
            except RuntimeError:
                pass

        if lane is self.local:
            slot.executor.submit(self._run, job, slot.tier, slot.model, free, True)
        else:
            tier = self.tiers[next(self._rr) % len(self.tiers)]
            self._thread(self._run, job, tier, model_of(tier), free, False)
        return job, lane

    @staticmethod
    def _thread(fn, *args) -> None:
        """A thread of its own (remote lane, hand-off); shutdown waits on the jobs, not on threads."""
        threading.Thread(target=fn, args=args, name="edgekit-remote", daemon=True).start()

    def _run(self, job: Job, tier, model, free: Callable[[], None], local: bool) -> None:
        kind = "remote" if self.kind == "remote" else "local"
        pump = _Pump(job, model, kind)
        try:
            if job.cancel.is_set():
                pump.cancelled = True
                job.put(("done", pump.outcome(None)))
                job.finished.set()
                return
            try:
                req = job.req
                events = tier.stream_chat(req.payload, req.cfg) if req.kind == "chat" else tier.stream(req.payload, req.cfg)
            except Exception as exc:
                job.put(("error", exc))
                job.finished.set()
                return
            handoff = (lambda ev: self._thread(pump.run, ev)) if local and self.kind == "router" else None
            pump.run(events, handoff, free)
        finally:
            free()

    # ---- shutdown ----------------------------------------------------------------------------------
    def begin_shutdown(self, timeout_s: float) -> None:
        """Stop taking requests, turn away those waiting, cancel those still running after ``timeout_s``."""
        if self.draining:
            return
        self.draining = True
        for lane in self.lanes():
            lane.close("the server is shutting down")
        asyncio.get_running_loop().call_later(timeout_s, self.cancel_all, "cancelled: the server is shutting down")

    def cancel_all(self, reason: str) -> None:
        for job in list(self.jobs):
            job.stop(reason)

    def join(self, timeout_s: float) -> bool:
        """Wait (blocking) until every job's worker is done with its tier; False if some still run."""
        deadline = time.monotonic() + timeout_s
        for job in list(self.jobs):
            if not job.finished.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def close(self) -> None:
        for r in self.replicas:
            r.executor.shutdown(wait=False)
        if self.embed_pool is not None:
            self.embed_pool.shutdown(wait=False)


async def until(aw: Awaitable, receive: Callable[[], Awaitable[dict]]):
    """Await ``aw``; when the client disconnects first, cancel it and raise ClientGone.

    ``receive`` is the request's ASGI receive, its body already read: it returns only when the
    client disconnects, so waiting costs no polling. It is not listened to once this returns
    (a streamed response listens to it itself).
    """
    task = asyncio.ensure_future(aw)
    watcher = asyncio.ensure_future(_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise ClientGone()
    finally:
        for t in (task, watcher):
            if not t.done():
                t.cancel()


async def _disconnect(receive: Callable[[], Awaitable[dict]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


__all__ = ["Dispatcher", "Lane", "Job", "Outcome", "Overloaded", "ClientGone", "until", "model_of", "served_name"]
