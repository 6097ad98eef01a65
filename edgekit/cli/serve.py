"""``edgekit serve``: an OpenAI-compatible server over an artifact, falling back to a remote LLM by itself.

The routing settings are ``edgekit run``'s, declared once in edgekit/cli/routing.py (``--remote``/``--model``,
edgekit.toml, the environment, the threshold ``edgekit calibrate`` wrote); see edgekit/serve for the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from edgekit.cli import app
from edgekit.cli.output import err
from edgekit.cli.routing import RoutingOptions, router_config, routing_options
from edgekit.cli.run import ARTIFACT_HELP, load_model
from edgekit.errors import ConfigError


@app.command("serve")
@routing_options
def serve_cmd(
    artifact: str = typer.Argument(..., help=ARTIFACT_HELP + " An encoder artifact serves /v1/embeddings alone.", show_default=False),
    embed: Optional[str] = typer.Option(None, "--embed", help="An encoder artifact (e.g. MiniLM) for /v1/embeddings.", show_default=False),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything beyond loopback should have API keys."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="Local models answering in parallel (each loads the artifact; mind --threads)."),
    routing: RoutingOptions = RoutingOptions(),  # --threads, --context and the router's options (edgekit/cli/routing.py)
    api_key: List[str] = typer.Option([], "--api-key", help="A key clients must send as 'Authorization: Bearer KEY' (repeatable; prefer $EDGEKIT_API_KEYS or --api-key-file: command lines are visible to other users).", show_default=False),
    api_key_file: List[Path] = typer.Option([], "--api-key-file", help="A file of client keys, one per line (repeatable; also $EDGEKIT_API_KEYS_FILE).", show_default=False),
    alias: Optional[str] = typer.Option(None, "--alias", help="The model id clients see (default: the artifact's name).", show_default=False),
    max_tokens: int = typer.Option(256, "--max-tokens", min=1, help="max_tokens of a chat request that sets none."),
    max_queue: int = typer.Option(16, "--max-queue", min=0, help="Requests that may wait for a busy model; the next gets 503 with Retry-After."),
    remote_concurrency: int = typer.Option(16, "--remote-concurrency", min=1, help="Requests the remote answers at once, beside the local ones."),
    max_body: int = typer.Option(1 << 20, "--max-body", min=1024, help="Largest request body in bytes."),
    shutdown_timeout: float = typer.Option(10.0, "--shutdown-timeout", min=0.0, help="On SIGTERM/SIGINT, seconds requests in flight may finish before they are cancelled."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's log level: critical, error, warning, info, debug."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="One line per request on stderr (no bodies, no keys)."),
):
    """Serve the OpenAI API (chat, completions, embeddings, models) over a local artifact, and fall back
    to a remote LLM when the router says so.

    Every answer names the tier that produced it and why: headers x-edgekit-tier and x-edgekit-trigger,
    and an 'edgekit' field in the body. /metrics in Prometheus format, /health without a key.
    Stops gracefully on SIGTERM or Ctrl-C.
    """
    import edgekit
    from edgekit.serve import load_api_keys, require_server

    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise ConfigError(f"--log-level must be one of critical, error, warning, info, debug; got {log_level!r}")
    require_server()
    keys = load_api_keys(api_key, api_key_file)
    router_cfg = router_config(routing)
    remote_llm = router_cfg.make_remote() if router_cfg is not None else None
    from edgekit.serve.server import bind, loopback_warning

    warning = loopback_warning(host, keys)
    if warning:
        err.print(f"[yellow]warning[/]: {warning.replace('set api_keys', 'pass --api-key or set $EDGEKIT_API_KEYS')}")
    sock = bind(host, port)  # before loading: a port in use fails at once
    models, embedder, tiers = [], None, []
    try:
        for _ in range(replicas):
            models.append(load_model(artifact, routing.threads, routing.context))
            if models[0].kind != "decoder":
                break
        if models[0].kind == "encoder":
            if embed or remote_llm is not None or replicas > 1:
                raise ConfigError(f"{artifact} is an encoder: it serves /v1/embeddings alone (drop --embed, --remote, --replicas)")
            embedder, models = models[0], []
        elif models[0].kind != "decoder":
            raise ConfigError(f"{artifact} is a {models[0].kind}: edgekit serve needs a text-generation or an encoder artifact")
        elif embed:
            embedder = edgekit.load(embed, threads=routing.threads)
        tiers = _tiers(models, router_cfg, remote_llm)
        _run(tiers, embedder, host, sock, keys, router_cfg, dict(
            model_name=alias, api_keys=keys, max_queue=max_queue, remote_concurrency=remote_concurrency,
            max_body_bytes=max_body, max_tokens=max_tokens, shutdown_timeout_s=shutdown_timeout,
        ), log_level, access_log)
    finally:
        sock.close()
        for m in models:
            m.close()
        if embedder is not None:
            embedder.close()
        if remote_llm is not None:
            remote_llm.close()


def _tiers(models: list, router_cfg, remote_llm) -> list:
    """One tier per replica: the models, or Routers over them sharing the remote, policy, breaker and log."""
    if remote_llm is None or not models:
        return models
    from edgekit.router.router import Router

    first = router_cfg.make_router(models[0], remote_llm)
    return [first] + [Router(m, remote_llm, first.policy, breaker=first.breaker, decision_log=first.log) for m in models[1:]]


def _run(tiers, embedder, host, sock, keys, router_cfg, settings, log_level, access_log) -> None:
    from edgekit.serve import serve

    from edgekit.serve.workers import served_name

    def ready(url: str) -> None:
        what = []
        if tiers:
            local = tiers[0].local if router_cfg is not None else tiers[0]
            what.append(f"{settings['model_name'] or served_name(local)} ({local.backend}, {len(tiers)} replica"
                        f"{'s' if len(tiers) > 1 else ''})")
        if router_cfg is not None:
            p = router_cfg.policy
            what.append(f"falls back to {router_cfg.remote.model} at {router_cfg.remote.url} "
                        f"({p.metric_name()} < {p.threshold:g})")
        if embedder is not None:
            what.append(f"embeddings from {served_name(embedder)}")
        err.print(f"edgekit serve: {url} · " + " · ".join(what) + f" · API keys: {len(keys) if keys else 'none'}",
                  markup=False, highlight=False)

    serve(tiers or None, embedder, host=host, sock=sock, log_level=log_level, access_log=access_log, close=False,
          on_ready=ready, **settings)


__all__ = ["serve_cmd"]
