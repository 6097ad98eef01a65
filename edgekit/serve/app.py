"""The FastAPI app: OpenAI's endpoints over any Tier, with the routing decision on every answer.

``create_app(tier, embedder=None, **settings)`` takes a Model, a RemoteLLM, a Router (or
a list of them: one replica each, answering in parallel) and an optional encoder Model
for ``/v1/embeddings``; the settings are :class:`~edgekit.serve.settings.ServeSettings`'
fields. The app does not close the tiers: their owner does (``edgekit.serve.serve`` and
``edgekit serve`` do, after the server stopped).

Every generation answer says which tier produced it and why: the headers
``x-edgekit-tier`` (local or remote), ``x-edgekit-trigger`` (the router's trigger, or
``none``) and ``x-edgekit-degraded``, and an ``edgekit`` field in the JSON body (OpenAI
clients ignore it; the Python client keeps it in ``model_extra``) that holds the router's
whole decision. A streamed answer carries the tier and trigger in its first chunk and the
complete decision in its last.

Requests are routed as streams, as ``edgekit run`` routes them: the decision is taken on
the first tokens, and a client that disconnects cancels its generation.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgekit.errors import ConfigError
from edgekit.router.router import Router
from edgekit.runtimes.base import Model
from edgekit.runtimes.tier import Tier
from edgekit.serve import protocol as P
from edgekit.serve.guard import BodyTooLarge, Guard
from edgekit.serve.metrics import ServeMetrics
from edgekit.serve.settings import ServeSettings
from edgekit.serve.workers import ClientGone, Dispatcher, Job, Outcome, Overloaded, served_name, until

log = logging.getLogger("edgekit.serve")


def _redactors(tiers: list) -> list[Callable[[str], str]]:
    """Every RemoteLLM's scrubber, so that no error or decision carries a remote's API key."""
    remotes = [t.remote if isinstance(t, Router) else t for t in tiers]
    return [r.redact for r in remotes if r is not None and callable(getattr(r, "redact", None))]


class ServerState:
    """What the endpoints share: the dispatcher, the metrics, the names, the settings."""

    def __init__(self, tiers: list, embedder, settings: ServeSettings):
        self.settings = settings
        self.dispatcher = Dispatcher(tiers, embedder, max_queue=settings.max_queue,
                                     remote_concurrency=settings.remote_concurrency, retry_after=settings.retry_after_s)
        router = tiers[0] if tiers and isinstance(tiers[0], Router) else None
        self.router = router
        self.metrics = ServeMetrics(self.dispatcher, (lambda: router.breaker.state) if router is not None else None)
        self.model_name = settings.model_name or (served_name(tiers[0]) if tiers else None)
        self.embed_name = settings.embed_name or (served_name(embedder) if embedder is not None else None)
        self.redactors = _redactors(tiers)
        self.created = int(time.time())
        self.loop = None

    def redact(self, text: str) -> str:
        for scrub in self.redactors:
            text = scrub(text)
        return text

    def scrubbed(self, data: Any) -> Any:
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {k: self.scrubbed(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.scrubbed(v) for v in data]
        return data

    def error(self, exc: BaseException) -> P.ApiError:
        err = P.error_for(exc)
        if err.status >= 500 and not isinstance(exc, P.ApiError):
            log.warning("request failed: %s", self.redact(f"{type(exc).__name__}: {exc}"),
                        exc_info=err.code == "internal_error")
        err.message = self.redact(err.message)
        return err

    def begin_shutdown(self) -> None:
        """Thread-safe: stop taking requests; those in flight get ``shutdown_timeout_s`` to finish."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.dispatcher.begin_shutdown, self.settings.shutdown_timeout_s)

    def drain(self, timeout_s: float) -> bool:
        """Blocking: cancel what still runs and wait for the workers (the decision log gets every record)."""
        self.dispatcher.draining = True
        self.dispatcher.cancel_all("cancelled: the server is shutting down")
        done = self.dispatcher.join(timeout_s)
        self.dispatcher.close()
        return done


def _json(data: dict, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _decision_headers(head: dict[str, Any]) -> dict[str, str]:
    return {"x-edgekit-tier": head["tier"], "x-edgekit-trigger": head["trigger"] or "none",
            "x-edgekit-degraded": "true" if head["degraded"] else "false"}


def _tiers(tier) -> list:
    tiers = list(tier) if isinstance(tier, (list, tuple)) else [] if tier is None else [tier]
    for t in tiers:
        if not isinstance(t, Tier):
            raise ConfigError(f"tier must be a Model, RemoteLLM or Router (a Tier), not {type(t).__name__}", param="tier")
        if type(t) is not type(tiers[0]):
            raise ConfigError("replicas must all be of one kind (all Models, or all Routers)", param="tier")
        if isinstance(t, Model):
            t.require_decoder("serve chat and completions")
    if len({id(t) for t in tiers}) != len(tiers) or len({id(m) for m in map(_local_model, tiers) if m is not None}) != len(
            [m for m in map(_local_model, tiers) if m is not None]):
        raise ConfigError("each replica needs a Model of its own (load the artifact once per replica)", param="tier")
    return tiers


def _local_model(t):
    return t.local if isinstance(t, Router) else t if isinstance(t, Model) else None


def create_app(tier=None, embedder: Model | None = None, **settings) -> FastAPI:
    """An OpenAI-compatible app over ``tier`` (a Tier or a list of replicas) and an optional encoder ``embedder``."""
    tiers = _tiers(tier)
    if embedder is not None and (not isinstance(embedder, Model) or embedder.kind != "encoder"):
        raise ConfigError("embedder must be an encoder Model (an artifact exported with task=feature-extraction)",
                          param="embedder")
    if not tiers and embedder is None:
        raise ConfigError("nothing to serve: pass a tier (a Model, RemoteLLM or Router), an embedder, or both", param="tier")
    state = ServerState(tiers, embedder, ServeSettings.from_kwargs(settings))

    async def lifespan(app):
        import asyncio

        state.loop = asyncio.get_running_loop()
        yield
        await asyncio.to_thread(state.drain, max(1.0, state.settings.shutdown_timeout_s))

    app = FastAPI(title="edgekit serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.edgekit = state
    app.add_middleware(Guard, api_keys=state.settings.api_keys, max_body_bytes=state.settings.max_body_bytes)

    @app.exception_handler(P.ApiError)
    async def _api_error(request: Request, exc: P.ApiError):
        return _json(exc.body(), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return _json(P.ApiError(exc.status_code, message, code=code).body(), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        err = state.error(exc)
        return _json(err.body(), err.status)

    @app.get("/health")
    async def health():
        if state.dispatcher.draining:
            return _json({"status": "shutting down"}, 503)
        return _json({"status": "ok"})

    @app.get("/v1/models")
    async def models():
        data = []
        if state.model_name:
            data.append(P.model_card(state.model_name, state.created, edgekit={"kind": state.dispatcher.kind}))
        if state.embed_name:
            data.append(P.model_card(state.embed_name, state.created, edgekit={"kind": "embedding"}))
        return _json({"object": "list", "data": data})

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate(state, request, "chat", lambda d: P.parse_chat(d, state.settings.max_tokens))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate(state, request, "completions", P.parse_completion)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await _embed(state, request)

    return app


async def _body(state: ServerState, request: Request, endpoint: str) -> dict:
    try:
        return P.parse_json(await request.body())
    except BodyTooLarge as exc:
        state.metrics.count(endpoint, "invalid")
        raise P.ApiError(413, str(exc), code="request_too_large", headers={"connection": "close"}) from None
    except P.ApiError:
        state.metrics.count(endpoint, "invalid")
        raise


async def _generate(state: ServerState, request: Request, endpoint: str, parse) -> Response:
    t0 = time.perf_counter()
    if not state.dispatcher.tiers:
        raise P.ApiError(404, "this server has no text-generation model (it serves embeddings only)", code="model_not_found")
    data = await _body(state, request, endpoint)
    try:
        req = parse(data)
    except P.ApiError:
        state.metrics.count(endpoint, "invalid")
        raise
    try:
        job, _ = await state.dispatcher.start(req, request.receive)
    except Overloaded as exc:
        state.metrics.count(endpoint, "rejected")
        raise P.ApiError(503, str(exc), type="server_error", code="overloaded",
                         headers={"Retry-After": str(exc.retry_after)}) from None
    except ClientGone:
        state.metrics.count(endpoint, "cancelled")
        return Response(status_code=499)
    except Exception as exc:  # the lane choice renders the chat template: a ConfigError is the request's fault
        state.metrics.count(endpoint, "invalid" if isinstance(exc, ConfigError) else "error")
        raise state.error(exc) from None
    try:
        first = await until(job.items.get(), request.receive)
    except BaseException as exc:  # the client left (ClientGone), or the server cancelled the request
        job.stop("cancelled by the client")
        state.metrics.count(endpoint, "cancelled")
        if isinstance(exc, ClientGone):
            return Response(status_code=499)
        raise
    kind, value = first
    if kind == "error":
        err = state.error(value)
        state.metrics.count(endpoint, "invalid" if err.status < 500 else "error")
        raise err
    if kind == "done" and not req.stream:
        return _finish(state, endpoint, req, value, t0)
    if kind == "done":  # a stream that ended before any token: its head is the outcome's
        job.items.put_nowait(first)
        value = {"tier": value.tier, "trigger": value.trigger, "degraded": value.degraded}
    return StreamingResponse(_sse(state, job, req, value, endpoint, t0), media_type="text/event-stream",
                             headers={**_decision_headers(value), "cache-control": "no-cache", "x-accel-buffering": "no"})


def _finish(state: ServerState, endpoint: str, req: P.GenRequest, out: Outcome, t0: float) -> Response:
    """A non-streamed answer (or a stream that produced no token at all)."""
    total = time.perf_counter() - t0
    head = {"tier": out.tier, "trigger": out.trigger, "degraded": out.degraded}
    if out.cancelled:
        state.metrics.generation(endpoint, out, "cancelled", None, 0.0, total)
        raise P.ApiError(503, "the answer was cancelled: the server is shutting down", type="server_error",
                         code="cancelled", headers={"Retry-After": "1"})
    state.metrics.generation(endpoint, out, "ok", out.first_at - t0 if out.first_at else None,
                             (out.last_at - out.first_at) if out.first_at else 0.0, total)
    body = P.completion_body(req, state.model_name, out.text, out.finish, out.pieces,
                             P.usage(out.prompt_tokens, out.completion_tokens), state.scrubbed(out.decision),
                             out.tool_calls)
    return _json(body, headers=_decision_headers(head))


async def _sse(state: ServerState, job: Job, req: P.GenRequest, head: dict, endpoint: str, t0: float):
    model, chat = state.model_name, req.kind == "chat"
    # an answer that may be a tool call is held until it is whole: then it is sent as text or as tool_calls
    hold = chat and req.cfg.tools is not None and req.cfg.tools.format is not None
    pending: list[P.Piece] = []
    offset, n, first_at, last_at, head_sent = 0, 0, None, None, chat
    out: Outcome | None = None
    outcome = "cancelled"
    try:
        if chat:
            yield P.sse(P.chunk(req, model, "", role=True, edgekit=head))
        while True:
            kind, value = await job.items.get()
            if kind == "piece":
                n += 1
                last_at = time.perf_counter()
                first_at = first_at or last_at
                pending.append(value)
                if value.text and not hold:
                    yield P.sse(P.chunk(req, model, value.text, pieces=pending, offset=offset,
                                        edgekit=None if head_sent else head))
                    head_sent = True
                    offset += sum(len(p.text) for p in pending)
                    pending = []
            elif kind == "done":
                out = value
                if out.cancelled:
                    yield P.sse(P.ApiError(503, job.reason, type="server_error", code="cancelled").body())
                    break
                if hold and out.tool_calls:
                    yield P.sse(P.chunk(req, model, None, tool_calls=out.tool_calls, edgekit=None if head_sent else head))
                    pending = []
                elif hold and pending:
                    yield P.sse(P.chunk(req, model, "".join(p.text for p in pending), pieces=pending,
                                        edgekit=None if head_sent else head))
                    pending = []
                yield P.sse(P.chunk(req, model, None if chat else "", finish=out.finish, pieces=pending, offset=offset,
                                    edgekit=state.scrubbed(out.decision)))
                if req.include_usage:
                    yield P.sse(P.usage_chunk(req, model, P.usage(out.prompt_tokens, out.completion_tokens)))
                yield b"data: [DONE]\n\n"
                outcome = "ok"
                break
            elif kind == "error":
                err = state.error(value)
                yield P.sse(err.body())
                outcome = "error"
                break
    finally:
        if outcome == "cancelled" and out is None:
            job.stop("cancelled by the client")
        if out is None:
            out = Outcome(head["tier"], head["trigger"], head["degraded"], {}, completion_tokens=n)
        total = time.perf_counter() - t0
        state.metrics.generation(endpoint, out, outcome, (first_at - t0) if first_at else None,
                                 (last_at - first_at) if first_at else 0.0, total)


async def _embed(state: ServerState, request: Request) -> Response:
    import asyncio

    t0 = time.perf_counter()
    d = state.dispatcher
    if d.embedder is None:
        raise P.ApiError(404, "this server has no embedding model (it was started without an embedder)",
                         code="model_not_found")
    data = await _body(state, request, "embeddings")
    try:
        req = P.parse_embeddings(data)
    except P.ApiError:
        state.metrics.count("embeddings", "invalid")
        raise
    try:
        slot = await until(d.embed.acquire(), request.receive)
    except Overloaded as exc:
        state.metrics.count("embeddings", "rejected")
        raise P.ApiError(503, str(exc), type="server_error", code="overloaded",
                         headers={"Retry-After": str(exc.retry_after)}) from None
    except ClientGone:
        state.metrics.count("embeddings", "cancelled")
        return Response(status_code=499)
    t1 = time.perf_counter()
    try:
        def work():
            vectors = slot.embed(req.texts)
            return vectors, sum(len(slot.tokenize(t)) for t in req.texts)

        vectors, tokens = await asyncio.get_running_loop().run_in_executor(d.embed_pool, work)
    except Exception as exc:
        state.metrics.count("embeddings", "error", "local")
        raise state.error(exc) from None
    finally:
        d.embed.release(slot, time.perf_counter() - t1)
    if req.dimensions is not None and req.dimensions != vectors.shape[-1]:
        state.metrics.count("embeddings", "invalid")
        raise P.bad(f"dimensions={req.dimensions} is not available: {state.embed_name} gives {vectors.shape[-1]}",
                    param="dimensions")
    state.metrics.count("embeddings", "ok", "local")
    state.metrics.duration.labels("embeddings").observe(time.perf_counter() - t0)
    return _json(P.embedding_body(vectors, state.embed_name, req.base64, tokens))


__all__ = ["create_app", "ServerState"]
