"""Run the app under uvicorn until SIGTERM or SIGINT, then shut down gracefully and return.

What a stop does, in order: the listening socket closes (no new connections); requests
waiting for a slot get 503; those running get ``shutdown_timeout_s`` to finish, then are
cancelled between two tokens (a streamed answer ends with an error event); the workers
close their streams, which writes every Router decision record; then the tiers are
closed. A second SIGINT stops at once. The process exits normally (status 0): a stop
asked for by a signal is not a failure.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from typing import Callable

import uvicorn

from edgekit.errors import ConfigError, is_int
from edgekit.serve.app import create_app
from edgekit.serve.settings import is_loopback

log = logging.getLogger("edgekit.serve")

HANDLED = (signal.SIGINT, signal.SIGTERM)


class GracefulServer(uvicorn.Server):
    """uvicorn's server that tells the app a stop began, and does not re-raise the signal once stopped."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]):
        super().__init__(config)
        self._on_stop = on_stop

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self._on_stop()

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop from any thread (what a signal does)."""
        self.should_exit = True
        self._on_stop()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the model work starts being useful: a taken port fails at once."""
    if not is_int(port, 0, 65535):
        raise ConfigError(f"port must be an integer in 0..65535, got {port!r}", param="port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host={host!r}: {exc.strerror or exc}", param="host") from exc
    family, _, _, _, address = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it Nagle's algorithm holds a response's last small write for the client's delayed ACK (about 40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another port=)", param="port") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def loopback_warning(host: str, api_keys) -> str | None:
    if is_loopback(host) or api_keys:
        return None
    return (f"listening on {host}, beyond this machine, without API keys: anyone who can reach it may use the models "
            "(set api_keys, or bind to 127.0.0.1)")


def make_server(app, sock: socket.socket, *, log_level: str = "info", access_log: bool = True) -> GracefulServer:
    state = app.state.edgekit
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=int(state.settings.shutdown_timeout_s) + 5,
                            timeout_keep_alive=5, server_header=False)
    return GracefulServer(config, state.begin_shutdown)


def serve(tier=None, embedder=None, *, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info",
          access_log: bool = True, close: bool = True, on_ready: Callable[[str], None] | None = None,
          sock: socket.socket | None = None, **settings) -> None:
    """Serve ``tier`` (and ``embedder``) on ``host:port`` until SIGTERM/SIGINT; blocks.

    ``settings`` are :class:`~edgekit.serve.settings.ServeSettings` fields. ``close``: close
    the tiers and the embedder once stopped. ``on_ready(url)`` is called once the socket listens.
    ``sock``: a socket :func:`bind` already opened for ``host`` (``port`` is then its port).
    """
    app = create_app(tier, embedder, **settings)
    state = app.state.edgekit
    if sock is None:
        warning = loopback_warning(host, state.settings.api_keys)
        if warning:
            log.warning(warning)
        sock = bind(host, port)
    server = make_server(app, sock, log_level=log_level, access_log=access_log)
    try:
        if on_ready is not None:
            bound = sock.getsockname()
            on_ready(f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}/v1")
        server.run(sockets=[sock])
    finally:
        sock.close()
        if not state.drain(max(1.0, state.settings.shutdown_timeout_s)):
            log.warning("some generations were still running at exit")
        if close:
            tiers = state.dispatcher.tiers
            for t in tiers:
                with contextlib.suppress(Exception):
                    t.close()
            if embedder is not None:
                with contextlib.suppress(Exception):
                    embedder.close()


__all__ = ["serve", "make_server", "bind", "GracefulServer", "loopback_warning"]
