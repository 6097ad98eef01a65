"""Servers for the serve tests: edgekit's app on a uvicorn thread, or ``edgekit serve`` in a process.

Both listen on 127.0.0.1 on a free port. The remote tiers are the router tests' servers
(the real llama-cpp-python server, the misbehaving ones), imported from
tests/router/conftest.py. Local models use one thread (the machine is small and shared).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.router.conftest import (  # noqa: F401  (fixtures, registered by being imported here)
    KEY_ENV,
    broken_local,
    broken_onnx_decoder,
    faulty,
    free_port,
    llama_server,
    local_gguf,
    refused_url,
    remote,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_KEY = "sk-edgekit-serve-test-5f1c2a"


@dataclass
class Running:
    """An app served on a uvicorn thread of this process."""

    app: object
    server: object
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return self.url + "/v1"

    @property
    def state(self):
        return self.app.state.edgekit

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the server thread did not stop"
        self.state.drain(30)


def start_app(app) -> Running:
    from edgekit.serve.server import bind, make_server

    sock = bind("127.0.0.1", 0)
    server = make_server(app, sock, log_level="warning", access_log=False)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return Running(app, server, thread, sock.getsockname()[1])


@pytest.fixture
def serve_app():
    """``serve_app(tier, embedder=None, **settings)`` -> a :class:`Running` server, stopped after the test."""
    from edgekit.serve import create_app

    running: list[Running] = []

    def make(tier, embedder=None, **settings) -> Running:
        r = start_app(create_app(tier, embedder, **settings))
        running.append(r)
        return r

    yield make
    for r in running:
        r.stop()


@pytest.fixture(scope="session")
def minilm_encoder(onnx_artifact):
    import edgekit

    model = edgekit.load(onnx_artifact("minilm-int8").path, threads=1)
    yield model
    model.close()


@pytest.fixture(scope="session")
def short_context_gguf(smollm2_gguf):
    """The packaged GGUF with a 96-token context: long prompts overflow it (and fit the remote's 2048)."""
    import edgekit

    model = edgekit.load(smollm2_gguf, threads=1, context=96)
    yield model
    model.close()


def client(base: str, key: str = CLIENT_KEY, **kw):
    from openai import OpenAI

    return OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120, **kw)


def metrics_of(url: str, key: str | None = CLIENT_KEY) -> dict[tuple[str, tuple], float]:
    """``/metrics`` parsed with prometheus-client's parser: {(sample name, sorted labels): value}."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(metrics: dict, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in metrics.items() if n == name and all(dict(ls).get(k) == val for k, val in labels.items()))


def wait_until(predicate, timeout: float = 60.0, what: str = "the condition") -> None:
    """Poll ``predicate`` (a bounded wait for an event, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return self.url + "/v1"

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self, sig=signal.SIGTERM, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"edgekit serve did not stop within {timeout} s:\n{self.log.read_text()[-3000:]}")


@pytest.fixture
def serve_cli(tmp_path):
    """``serve_cli(*args, env=...)`` -> ``edgekit serve ARGS --port P`` in a process, ready (stopped after the test)."""
    import httpx

    started: list[ServeProcess] = []

    def start(*args: str, env: dict | None = None) -> ServeProcess:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "edgekit", "serve", *map(str, args), "--port", str(port)],
                                    stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
        sp = ServeProcess(proc, port, log)
        started.append(sp)
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"edgekit serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(sp.url + "/health", timeout=2).status_code == 200:
                    return sp
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"edgekit serve did not start:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)

    yield start
    for sp in started:
        if sp.proc.poll() is None:
            sp.proc.kill()
            sp.proc.wait()
