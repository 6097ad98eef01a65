"""Servers for the router tests: the real llama-cpp-python server, and small real servers that misbehave.

* ``llama_server`` (session): ``python -m llama_cpp.server`` serving the packaged SmolLM2
  GGUF on a free port of 127.0.0.1, with an API key, so every request of the tests proves
  the key is sent. A server that does not come up is a setup error, never a skip.
* ``faulty`` (function): :class:`FaultyServer`, an HTTP/1.1 server on a thread that
  answers each request according to a plan: a status code (500, 429 with Retry-After,
  401 echoing the credentials it got), a slow first byte, a connection dropped before
  the answer or mid-stream, malformed SSE, an answer that drips one chunk at a time
  forever, an answer that ignores max_tokens or the stop strings, or a well-formed
  OpenAI answer. It records every request (time, headers, JSON body).
* ``broken_onnx_decoder``: a real ONNX decoder (onnx.helper graph, real tokenizer) that
  onnxruntime loads but fails to run, for real local failures.

The local model is the packaged GGUF with one thread: on a shared 2-core machine
llama.cpp with two threads spins on its barriers and runs several times slower.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KEY_ENV = "EDGEKIT_TEST_REMOTE_KEY"
OK_WORDS = ["Paris", " is", " the", " capital", " of", " France", "."]
LONG_WORDS = [f" word{i}" for i in range(200)]  # what a server that ignores max_tokens sends
COUNTING = ["1", ",", " 2", ",", " 3", ",", " 4", "."]  # what a server that ignores stop=[","] sends


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LlamaServer:
    url: str
    model: str
    key: str
    key_env: str
    proc: subprocess.Popen
    log: Path


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf, tmp_path_factory):
    """The real OpenAI-compatible server (llama-cpp-python) on 127.0.0.1, with an API key in the env."""
    import httpx

    port, key = free_port(), "sk-edgekit-test-" + secrets.token_hex(12)
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1",
        "--api_key", key,
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer within 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        os.environ[KEY_ENV] = key
        yield LlamaServer(url, "smollm2", key, KEY_ENV, proc, log)
    finally:
        os.environ.pop(KEY_ENV, None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def local_gguf(smollm2_gguf):
    """The packaged SmolLM2 GGUF as the local tier (one thread)."""
    import edgekit

    model = edgekit.load(smollm2_gguf, threads=1)
    yield model
    model.close()


@pytest.fixture(scope="session")
def remote(llama_server):
    from edgekit.router.remote import RemoteLLM

    r = RemoteLLM(llama_server.url, llama_server.model, api_key_env=llama_server.key_env, timeout=120, deadline_s=600)
    yield r
    r.close()


# ---- misbehaving servers ----------------------------------------------------------------------
@dataclass
class Seen:
    time: float
    path: str
    headers: dict
    body: dict | None


@dataclass
class FaultyServer:
    """Answers the n-th request with ``plan[n]`` (the last step repeats). Steps:

    ``"ok"``; ``(status, headers)`` e.g. ``(500, {})``, ``(429, {"Retry-After": "1"})``;
    ``"echo401"`` (401 quoting the Authorization header it got); ``"slow"`` (nothing for
    up to 30 s); ``"close"`` (drops the connection before answering); ``"drop"`` (200, two
    tokens, then drops the connection); ``"malformed"`` (200 with invalid SSE / JSON); ``"html"``
    (200 with an HTML page, streaming or not);
    ``"drip"`` (200, then one SSE chunk, or one byte of the JSON answer, every ``drip_s``
    seconds, never finishing: each read gets data long before any read timeout);
    ``"ignore_max"`` (an answer of ``LONG_WORDS`` tokens whatever max_tokens says, usage
    included); ``"ignore_stop"`` (``COUNTING``, commas and all, whatever stop says).
    """

    plan: list = field(default_factory=lambda: ["ok"])
    seen: list[Seen] = field(default_factory=list)
    drip_s: float = 0.1

    def __post_init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._reply_json(200, {"object": "list", "data": [{"id": "faulty"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with server.lock:
                    step = server.plan[min(len(server.seen), len(server.plan) - 1)]
                    server.seen.append(Seen(time.monotonic(), self.path, dict(self.headers), body))
                stream = bool(body and body.get("stream"))
                server.act(self, step, stream)

            def _reply_json(self, status, data, headers=None):
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # ---- behaviours ----
    def act(self, h, step, stream: bool) -> None:
        if step == "ok":
            return self._ok(h, stream)
        if step == "echo401":
            got = h.headers.get("Authorization", "")
            return h._reply_json(401, {"error": {"message": f"Incorrect API key provided: {got}", "type": "invalid_request_error"}})
        if step == "slow":
            self.release.wait(30)
            return self._ok(h, stream)
        if step == "close":
            return self._drop(h)
        if step == "drop":
            if stream:
                self._sse_head(h)
                for word in OK_WORDS[:2]:
                    self._chunk(h, _sse({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
            else:
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", "4096")
                h.end_headers()
                h.wfile.write(b'{"choices": [{"index": 0, "message": {"content": "Par')
            return self._drop(h)
        if step == "drip":
            return self._drip(h, stream)
        if step in ("ignore_max", "ignore_stop"):
            return self._ok(h, stream, LONG_WORDS if step == "ignore_max" else COUNTING)
        if step == "html":  # a web page where the API should be: the same answer to a stream request
            return self._page(h, b"<html><body>Welcome to nginx!</body></html>")
        if step == "malformed":
            if stream:
                self._sse_head(h)
                self._chunk(h, b'data: {"choices": [{"delta": {"content": "Par\n\n')
                self._chunk(h, b"data: [DONE]\n\n")
                self._chunk(h, b"")
                return None
            return self._page(h, b"<html><body>502 Bad Gateway (but sent as 200)</body></html>")
        status, headers = step
        return h._reply_json(status, {"error": {"message": f"induced failure {status}", "type": "server_error"}}, headers)

    @staticmethod
    def _page(h, payload: bytes) -> None:
        """200 with an HTML page."""
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def _ok(self, h, stream: bool, words: list[str] = OK_WORDS) -> None:
        if not stream:
            return h._reply_json(200, {
                "id": "chatcmpl-faulty", "object": "chat.completion", "model": "faulty",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": len(words), "total_tokens": 9 + len(words)},
            })
        self._sse_head(h)
        self._chunk(h, b": ping\n\n")
        self._chunk(h, _sse({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}))
        for word in words:
            self._chunk(h, _sse({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}))
        self._chunk(h, _sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        self._chunk(h, b"data: [DONE]\n\n")
        self._chunk(h, b"")
        return None

    def _drip(self, h, stream: bool) -> None:
        """An answer that never ends, one piece every ``drip_s`` seconds, until the client hangs up."""
        if stream:
            self._sse_head(h)
            pieces = (_sse({"choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}]})
                      for i in range(10**6))
        else:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(10**6))
            h.end_headers()
            pieces = (b"{" if i == 0 else b" " for i in range(10**6))
        for piece in pieces:
            if self.release.wait(self.drip_s):
                return None
            try:
                self._chunk(h, piece) if stream else (h.wfile.write(piece), h.wfile.flush())
            except OSError:  # the client hung up: what the test wants
                return None
        return None

    @staticmethod
    def _sse_head(h) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    @staticmethod
    def _chunk(h, data: bytes) -> None:
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    @staticmethod
    def _drop(h) -> None:
        h.wfile.flush()
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def set_plan(self, plan: list) -> None:
        with self.lock:
            self.plan = list(plan)
            self.seen.clear()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a dropped connection is the point, not news
        pass


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@pytest.fixture
def faulty():
    """``faulty(plan)`` -> a started :class:`FaultyServer` (closed after the test)."""
    servers = []

    def make(plan):
        s = FaultyServer(list(plan))
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/v1"


# ---- a local model that fails for real -------------------------------------------------------------
@pytest.fixture(scope="session")
def broken_onnx_decoder(tmp_path_factory) -> Path:
    """A KV-cache decoder graph whose embedding has 4 rows: onnxruntime loads it, then fails on any
    token id >= 4 ("indices element out of data bounds"), i.e. on every real prompt."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.builders import make_bpe_tokenizer

    folder = tmp_path_factory.mktemp("broken-decoder")
    vocab = make_bpe_tokenizer(folder)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": vocab, "max_position_embeddings": 256, "num_hidden_layers": 1,
        "hidden_size": 8, "num_attention_heads": 1, "num_key_value_heads": 1, "eos_token_id": 2, "bos_token_id": 1,
    }))
    table = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, vocab)).astype(np.float32), "table")
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "s"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [1, "t"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, [1, 1, "p", 8]),
        helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, [1, 1, "p", 8]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "s", vocab]),
        helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, [1, 1, "p", 8]),
        helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, [1, 1, "p", 8]),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["logits"], axis=0),
        helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
        helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"]),
    ]
    graph = helper.make_graph(nodes, "broken", inputs, outputs, initializer=[table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    return folder / "model.onnx"


@pytest.fixture(scope="session")
def broken_local(broken_onnx_decoder):
    import edgekit

    model = edgekit.load(broken_onnx_decoder, threads=1)
    yield model
    model.close()


# ---- a tiny local tier, healthy or broken (seconds to build: no packaged model needed) -------------------
@pytest.fixture(scope="session")
def tiny_gguf_file(tiny_llama, tmp_path_factory) -> Path:
    """The tiny random llama as a bare f16 GGUF file (f16: a NaN in a weight stays NaN in llama.cpp)."""
    from edgekit.exporters.gguf import export_gguf

    return export_gguf(tiny_llama, tmp_path_factory.mktemp("router-tiny") / "gguf", quant="f16").model_path


@pytest.fixture(scope="session")
def tiny_local(tiny_gguf_file):
    import edgekit

    model = edgekit.load(tiny_gguf_file, threads=1)
    yield model
    model.close()


@pytest.fixture(scope="session")
def nan_local(tiny_gguf_file, tmp_path_factory):
    """The same model with a NaN in a norm weight: every forward pass gives NaN logits."""
    import shutil

    import edgekit
    from tests.runtimes.corrupt import poison_gguf

    bad = tmp_path_factory.mktemp("router-nan") / "nan.gguf"
    shutil.copyfile(tiny_gguf_file, bad)
    model = edgekit.load(poison_gguf(bad, "blk.0.attn_norm.weight"), threads=1)
    yield model
    model.close()
