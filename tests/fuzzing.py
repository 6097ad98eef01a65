"""Inputs for the parser fuzz tests (tests/test_parsers_fuzz.py): damage, valid seeds, a replaying server.

``damaged(seed)`` edits valid bytes (bit flips, set bytes, inserts, deletes, repeats,
truncation); ``with_replaced_value(obj)`` keeps JSON/TOML syntax valid but puts a value
of the wrong type somewhere. The seeds are valid files written the way edgekit writes
them; the ``huge_*`` lists are headers that declare far more than the data holds.
"""

from __future__ import annotations

import copy
import json
import struct
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
from hypothesis import strategies as st

from edgekit import protobuf as pb

# ---- damage --------------------------------------------------------------------------------------

INTERESTING = [
    b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00" * 8, b"\xff" * 8, b"\xff\xff\xff\x7f", b"\x80" * 12 + b"\x01",
    b"\n", b"\r", b"\r\n", b"\n\n", b'"', b"[", b"]", b"{", b"}", b"\\", b"=", b":", b",", b"\xc3", b"\xed\xa0\x80",
    b"1e999", b"-1", b"NaN", b"Infinity", b"null", b"9" * 5000, b"[" * 3000, b"data: ", b"\t",
]


@st.composite
def damaged(draw, seed: bytes, max_ops: int = 6) -> bytes:
    """``seed`` after 1..max_ops random edits: bit flips, set bytes, inserts, deletes, repeats, truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "repeat", "truncate", "overwrite")))
        i = draw(st.integers(0, n))
        if op == "flip" and n:
            data[min(i, n - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[min(i, n - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=16)))
        elif op == "delete":
            del data[i:draw(st.integers(i, min(n, i + 64)))]
        elif op == "repeat":
            j = draw(st.integers(i, min(n, i + 64)))
            data[i:i] = data[i:j] * draw(st.integers(1, 4))
        elif op == "truncate":
            del data[i:]
        elif op == "overwrite":
            chunk = draw(st.sampled_from(INTERESTING))
            data[i:i + len(chunk)] = chunk
    return bytes(data)


def fuzzed(seed: bytes) -> st.SearchStrategy[bytes]:
    """Damaged copies of ``seed`` (mostly), or random bytes."""
    return st.one_of(damaged(seed), damaged(seed), damaged(seed), st.binary(max_size=300))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
    max_leaves=8,
)
TOML_VALUES = st.recursive(
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), kids, max_size=3),
    max_leaves=6,
)


@st.composite
def with_replaced_value(draw, obj, values=JSON_VALUES):
    """A deep copy of ``obj`` with one value somewhere in it replaced, added or removed."""
    obj = copy.deepcopy(obj)
    parent, key = None, None
    node = obj
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        parent, node = node, node[key]
    action = draw(st.sampled_from(("replace", "replace", "add", "remove")))
    if parent is None:
        if isinstance(obj, dict) and action != "replace":
            name = draw(st.sampled_from(sorted(obj))) if action == "remove" and obj else draw(st.text(max_size=8))
            if action == "remove":
                obj.pop(name, None)
            else:
                obj[name] = draw(values)
            return obj
        return draw(values)
    if action == "remove":
        del parent[key]
    elif action == "add" and isinstance(node, dict):
        node[draw(st.text(max_size=8))] = draw(values)
    else:
        parent[key] = draw(values)
    return obj


def json_bytes(obj) -> bytes:
    return json.dumps(obj).encode()  # NaN and Infinity included, as Python's json reads them back


def expect(call, errors, value_type=None):
    """``call()`` either returns (a ``value_type``) or raises one of ``errors`` with a one-line message."""
    try:
        value = call()
    except errors as exc:
        assert str(exc) and "\n" not in str(exc).strip(), f"{type(exc).__name__} message is not one line: {exc}"
        return None
    if value_type is not None:
        assert isinstance(value, value_type), value
    return value


# ---- valid seeds ------------------------------------------------------------------------------

def manifest_seed(folder: Path) -> bytes:
    from edgekit.manifest import (FileEntry, GateReport, Manifest, ModelInfo, Quantization, SourceInfo, now_iso,
                                  write_manifest)

    m = Manifest(
        format="gguf", task="text-generation", precision="q8_0", quantization=Quantization(method="llama.cpp"),
        model_file="model.gguf",
        model=ModelInfo(architecture="llama", n_layers=2, hidden_size=64, n_heads=4, n_kv_heads=2, head_dim=16,
                        vocab_size=256, context_length=128, bos_token_id=1, eos_token_ids=[2]),
        source=SourceInfo(kind="local", path="/models/tiny", weights_sha256="0" * 64),
        files=[FileEntry(path="model.gguf", size=1234, sha256="a" * 64)], versions={"edgekit": "0.1", "gguf": "0.19"},
        gate=GateReport(status="passed", kind="decoder", precision="q8_0", reference="fp32 reference",
                        metrics={"kl_mean": 0.01}, thresholds={"kl_mean": 0.05}, n_prompts=4),
        created_at=now_iso(),
    )
    write_manifest(folder, m)
    return (folder / "edgekit.json").read_bytes()


def gguf_seed(path: Path) -> bytes:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_name("fuzz")
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "<s>", "</s>"])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.0, 0.5, 0.25])
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("fuzz.flag", True)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.add_tensor("output.weight", np.zeros((4, 8), np.float16))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def gguf_header(n_tensors: int = 0, n_kv: int = 0, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def gguf_string(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def huge_ggufs() -> list[bytes]:
    """Headers that declare far more than the file holds, or nest without end."""
    kv_head = gguf_header(n_kv=1) + gguf_string(b"k")
    nested = kv_head + struct.pack("<I", 9) + (struct.pack("<IQ", 9, 1) * 5000) + struct.pack("<IQ", 4, 0)
    return [
        gguf_header(n_tensors=2**60),
        gguf_header(n_kv=2**60),
        gguf_header(n_tensors=2**64 - 1, n_kv=2**64 - 1),
        gguf_header(n_kv=1) + struct.pack("<Q", 2**63) + b"key",  # key string longer than the file
        kv_head + struct.pack("<I", 8) + struct.pack("<Q", 2**64 - 1),  # string value longer than the file
        kv_head + struct.pack("<I", 9) + struct.pack("<IQ", 4, 2**60),  # u32 array of 2**60 items
        kv_head + struct.pack("<I", 9) + struct.pack("<IQ", 8, 2**60) + gguf_string(b"x") * 4,  # 2**60 strings
        kv_head + struct.pack("<I", 9) + struct.pack("<IQ", 9, 2**60),  # 2**60 arrays
        nested,  # arrays nested 5000 deep
        kv_head + struct.pack("<I", 99),  # unknown value type
        gguf_header(n_tensors=1) + gguf_string(b"t") + struct.pack("<I", 2**32 - 1),  # 2**32-1 dims
        gguf_header(n_tensors=1) + gguf_string(b"t") + struct.pack("<I", 8) + struct.pack("<Q", 2**64 - 1) * 8
        + struct.pack("<IQ", 0, 0),  # dims of 2**64-1 each
        gguf_header(version=1), gguf_header(version=2**32 - 1), b"GGUF", b"GGU", b"",
    ]


def onnx_seed() -> bytes:
    emb = np.arange(40, dtype=np.float32).reshape(10, 4)
    w = np.ones((4, 10), np.float32)
    return pb.onnx_model(
        nodes=[pb.node("Gather", ["E", "ids"], ["h"]), pb.node("MatMul", ["h", "W"], ["y"]),
               pb.node("MatMulNBits", ["y", "Q"], ["z"], K=10, N=10, bits=4, block_size=32),
               pb.node("Softmax", ["z"], ["logits"], axis=-1)],
        inputs=[pb.value_info("ids", pb.INT64, (2,)), pb.value_info("past_key_values.0.key", 10, (1, 1, 0, 4))],
        outputs=[pb.value_info("logits", pb.FLOAT, (2, 10))],
        initializers=[pb.tensor("E", pb.FLOAT, emb.shape, emb.tobytes()), pb.tensor("W", pb.FLOAT, w.shape, w.tobytes()),
                      pb.tensor("Q", pb.UINT8, (10, 1, 16), bytes(160))],
        name="fuzz",
    )


def huge_onnx() -> list[bytes]:
    graph_tag = pb.varint((7 << 3) | 2)
    return [
        graph_tag + pb.varint(2**62),  # a graph longer than the file
        graph_tag + pb.varint(2**64 - 1) + b"\x0a\x02ab",
        pb.field(7, pb.varint((5 << 3) | 2) + pb.varint(2**40)),  # an initializer longer than its graph
        b"\x08" + b"\xff" * 200_000 + b"\x01",  # a varint of 200,000 bytes
        pb.field(7, b"\x0a" + b"\x80" * 100_000),  # a length varint that never ends
        pb.field(7, pb.field(5, pb.field(1, 2**64 - 1) + pb.field(2, 1))),  # dimension -1
        pb.field(7, pb.field(1, pb.varint((4 << 3)) + pb.varint(5))),  # op_type as a varint
        pb.field(7, pb.field(11, pb.varint((2 << 3)) + pb.varint(5))),  # a value-info type as a varint
        pb.field(7, pb.field(5, pb.varint((8 << 3) | 5) + b"abcd")),  # a tensor name as fixed32
        pb.field(7, pb.field(5, pb.field(2, b"xx"))),  # a data type as bytes
        pb.field(7, pb.field(5, pb.varint((2 << 3) | 5) + b"\x01\x00\x00\x00")),  # a data type as fixed32
        pb.field(7, b"\x0b\x0c"),  # group wire types
    ]


CONFIG_TOML = b"""schema_version = 1

[remote]
url = "http://127.0.0.1:8080/v1"
model = "smollm2"
api_key_env = "EDGEKIT_REMOTE_API_KEY"
timeout_s = 60.0
extra_body = { top_k = 40 }

[policy]
threshold = 0.3
first_k = 8
quantile = 0.1
ttft_budget_s = 2.0
fallback_errors = ["BackendError"]

[breaker]
failure_threshold = 3
cooldown_s = 30.0

[decision_log]
path = "decisions.jsonl"
include_prompts = false
"""
NESTED_TOML = [b"a = " + b"[" * 100_000, b"a = " + b"{b=" * 100_000, b"schema_version = " + b"9" * 5000,
               b"schema_version = 0x" + b"f" * 5000, b"[remote]\ntimeout_s = 1e999", b"\xff\xfe", b"a = \"\\ud800\""]

QUESTIONS = [
    {"id": "fact-001", "question": "What is the capital of France?", "answer": "Paris", "kind": "factual"},
    {"id": "math-001", "question": "What is 7 times 8?", "answer": 56, "aliases": ["fifty-six"], "kind": "arithmetic"},
    {"question": "Who wrote Hamlet?", "answer": "Shakespeare", "aliases": ["William Shakespeare"]},
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def calibration() -> dict:
    from edgekit.profiler.roofline import Calibration

    return Calibration(
        backend="llama.cpp", artifact="SmolLM2-135M-Instruct.Q4_1", host="vm, AMD EPYC", measured_at="2026-11-30",
        threads=2, compute="fp32", host_bandwidth_gbs=38.7, host_peak_gops=427.7, host_core_gflops=222.7,
        forward_s=0.01, roof_s=0.005, roof_efficiency=0.5,
    ).model_dump(mode="json")


def report() -> dict:
    return {"schema": "edgekit.bench", "schema_version": 1, "created_at": "2026-11-30T00:00:00+00:00",
            "results": [{"label": "onnx", "calibration": {**calibration(), "backend": "onnx"}},
                        {"label": "gguf", "calibration": calibration()}]}


# ---- a server that replays one answer ------------------------------------------------------

class _Replay(BaseHTTPRequestHandler):
    """Answers every POST with the server's ``body`` (200, its ``content_type``), as a real server on 127.0.0.1."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def replay_server() -> Iterator:
    """``answer(body, content_type)`` -> a RemoteLLM (no retries) whose every request gets that 200 answer."""
    from edgekit.router.remote import RemoteLLM

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote = RemoteLLM(f"http://127.0.0.1:{server.server_address[1]}/v1", "fuzz", api_key="sk-fuzz", max_retries=0,
                       timeout=30, connect_timeout=30)

    def answer(body: bytes, content_type: str):
        server.body, server.content_type = body, content_type
        return remote

    try:
        yield answer
    finally:
        remote.close()
        server.shutdown()
        server.server_close()


def chunk(delta: dict | None = None, finish=None, **extra) -> dict:
    choice = {"index": 0, "delta": delta if delta is not None else {}, "finish_reason": finish}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "fuzz", "choices": [choice], **extra}


SSE_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo é"}),
    chunk({}, "stop", usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
]


def sse(chunks, *, comment: bool = True) -> bytes:
    events = [f"data: {json.dumps(c, ensure_ascii=False)}\n\n" for c in chunks]
    if comment:
        events.insert(1, ": keep-alive\n\nevent: message\nid: 7\nretry: 100\n\n")
    return ("".join(events) + "data: [DONE]\n\n").encode()


COMPLETION = {
    "id": "c1", "object": "chat.completion", "created": 1, "model": "fuzz",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}
MESSAGES = [{"role": "user", "content": "hi"}]
