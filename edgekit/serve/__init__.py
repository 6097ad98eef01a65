"""An OpenAI-compatible HTTP server over any Tier: local first, the remote when the router says so.

    import edgekit
    from edgekit.router import load_config
    from edgekit.serve import serve

    router = load_config().make_router(edgekit.load("out/smollm2-q4_k_m"))   # edgekit.toml's remote and policy
    serve(router, edgekit.load("out/minilm-int8"), port=8080)      # blocks until SIGTERM / Ctrl-C

``create_app(tier, embedder=None, **settings)`` gives the ASGI app without running it.
Endpoints: ``POST /v1/chat/completions`` and ``/v1/completions`` (streamed or not),
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``, ``GET /metrics``. See
app.py (answers and headers), protocol.py (which request fields map to what),
workers.py (concurrency, the bounded queue, cancellation), guard.py (API keys, body
limit), metrics.py and server.py (graceful shutdown).

FastAPI, uvicorn and prometheus-client come with ``pip install 'edgekit[server]'``;
they are imported only here, when a server is made.
"""

from __future__ import annotations

from typing import Any

from edgekit.errors import MissingDependencyError
from edgekit.serve.settings import ServeSettings, load_api_keys

_LAZY = {"create_app": "edgekit.serve.app", "serve": "edgekit.serve.server"}

__all__ = ["create_app", "serve", "ServeSettings", "load_api_keys", "require_server"]


def require_server() -> None:
    """Raise MissingDependencyError naming the ``server`` extra when FastAPI, uvicorn or prometheus-client is missing."""
    import importlib.util

    missing = [name for name, module in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("prometheus-client", "prometheus_client"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingDependencyError(f"{', '.join(missing)} (for edgekit serve)", "server")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgekit.serve' has no attribute {name!r}")
    import importlib

    require_server()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
