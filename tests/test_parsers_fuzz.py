"""Parsers that never crash: random and damaged bytes into every file and stream format edgekit reads.

Each property: any input either parses or raises the parser's documented error
(see edgekit/errors.py); nothing else escapes (UnicodeDecodeError, KeyError,
struct.error, RecursionError, OverflowError ...) and nothing hangs. The inputs
start from valid files written the way edgekit writes them (a manifest, a GGUF
written by gguf-py, an ONNX model from edgekit.protobuf, a chat-completions SSE
stream, edgekit.toml, a target profile, calibration questions, a bench report)
and are damaged by flipping, setting, inserting, deleting, repeating and
truncating bytes; the JSON and TOML formats also get valid syntax holding
values of the wrong type. Fully random bytes, and headers that declare huge
lengths, counts or nesting, must fail fast with the documented error.

Reproducible: hypothesis runs derandomized (the same examples on every run) and keeps no example database.
A deeper search: EDGEKIT_FUZZ_EXAMPLES=3000 pytest tests/test_parsers_fuzz.py (200 per property by default).
"""

from __future__ import annotations

import copy
import json
import os
import struct
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgekit import protobuf as pb
from edgekit import tomlio
from edgekit.errors import ArtifactError, ConfigError, RemoteProtocolError, RemoteUnavailable
from tests import fuzzing as fz
from tests.fuzzing import TOML_VALUES, damaged, expect, fuzzed, json_bytes, with_replaced_value

FUZZ = settings(
    max_examples=int(os.environ.get("EDGEKIT_FUZZ_EXAMPLES", 200)), derandomize=True, database=None, deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---- the manifest ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest_file(work) -> tuple[Path, bytes]:
    folder = work / "artifact"
    folder.mkdir()
    return folder, fz.manifest_seed(folder)


def _check_manifest(folder: Path, data: bytes) -> None:
    from edgekit.manifest import Manifest, read_manifest

    (folder / "edgekit.json").write_bytes(data)
    expect(lambda: read_manifest(folder), ArtifactError, Manifest)


def test_the_manifest_seed_reads(manifest_file):
    from edgekit.manifest import read_manifest

    folder, seed = manifest_file
    (folder / "edgekit.json").write_bytes(seed)
    assert read_manifest(folder).model.n_layers == 2


@FUZZ
@given(data=st.data())
@example(data=None)
def test_manifest_reader_never_crashes(manifest_file, data):
    folder, seed = manifest_file
    if data is None:  # explicit nasty cases
        for bad in (b"[" * 100_000, b'{"a":' * 100_000, b"9" * 5000, b"\xff\xfe{}", b'{"schema_version": 1e999}',
                    b"\xed\xa0\x80", seed[:-1], b""):
            _check_manifest(folder, bad)
        return
    _check_manifest(folder, data.draw(fuzzed(seed)))


@FUZZ
@given(data=st.data())
def test_manifest_reader_never_crashes_on_wrong_values(manifest_file, data):
    folder, seed = manifest_file
    _check_manifest(folder, json_bytes(data.draw(with_replaced_value(json.loads(seed)))))


# ---- GGUF headers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_file(work) -> tuple[Path, bytes]:
    path = work / "model.gguf"
    return path, fz.gguf_seed(path)


def _check_gguf(path: Path, data: bytes) -> None:
    from edgekit.gguf_header import check_gguf_vocab, read_gguf_header
    from edgekit.profiler.shape import ModelShape, gguf_shape
    from edgekit.runtimes.llamacpp import check_gguf_file

    path.write_bytes(data)
    expect(lambda: check_gguf_file(path), ArtifactError)
    expect(lambda: read_gguf_header(path), ArtifactError, tuple)
    expect(lambda: read_gguf_header(path, arrays=("tokenizer.ggml.tokens",), tensors=False), ArtifactError, tuple)
    expect(lambda: check_gguf_vocab(path), ArtifactError, type(None))
    expect(lambda: gguf_shape(path), ArtifactError, ModelShape)


def test_the_gguf_seed_reads(gguf_file):
    from edgekit.gguf_header import read_gguf_header
    from edgekit.profiler.shape import gguf_shape

    path, seed = gguf_file
    path.write_bytes(seed)
    meta, tensors = read_gguf_header(path)
    assert meta["llama.block_count"] == 1 and meta["general.name"] == "fuzz"
    assert [name for name, _d, _t in tensors] == ["token_embd.weight", "output.weight", "blk.0.attn_norm.weight"]
    assert gguf_shape(path).n_params == 4 * 8 * 2 + 8


@pytest.mark.parametrize("index", range(len(fz.huge_ggufs())))
def test_gguf_header_with_huge_counts_fails_fast(gguf_file, index):
    from edgekit.gguf_header import check_gguf_vocab, read_gguf_header
    from edgekit.profiler.shape import gguf_shape

    path = gguf_file[0].with_name(f"huge-{index}.gguf")
    path.write_bytes(fz.huge_ggufs()[index])
    for read in (read_gguf_header, gguf_shape):
        with pytest.raises(ArtifactError, match="huge-"):
            read(path)
    assert check_gguf_vocab(path) is None  # at once: a damaged header is the loader's to report


def test_gguf_odd_but_readable_headers(gguf_file):
    """An embedding with no dimensions beside an output layer, and counts stored as floats: read, no crash."""
    from edgekit.profiler.shape import gguf_shape

    path = gguf_file[0].with_name("odd.gguf")
    tensor = struct.pack("<I", 1) + struct.pack("<Q", 8) + struct.pack("<IQ", 0, 0)
    kv = fz.gguf_string(b"general.architecture") + struct.pack("<I", 8) + fz.gguf_string(b"llama")
    kv += fz.gguf_string(b"llama.block_count") + struct.pack("<If", 6, float("inf"))
    kv += fz.gguf_string(b"llama.embedding_length") + struct.pack("<If", 6, 8.0)
    kv += fz.gguf_string(b"llama.attention.head_count") + struct.pack("<Ii", 5, -2)
    path.write_bytes(fz.gguf_header(n_tensors=2, n_kv=4) + kv + fz.gguf_string(b"output.weight") + tensor
                     + fz.gguf_string(b"token_embd.weight") + struct.pack("<I", 0) + struct.pack("<IQ", 0, 0) + bytes(64))
    shape = gguf_shape(path)
    assert shape.n_params == 9 and shape.gathered_bytes == 4
    assert shape.n_layers is None and shape.n_heads is None  # inf and -2 are no counts


@FUZZ
@given(data=st.data())
def test_gguf_header_reader_never_crashes(gguf_file, data):
    path, seed = gguf_file
    _check_gguf(path, data.draw(fuzzed(seed)))


@FUZZ
@given(data=st.data())
def test_gguf_header_reader_never_crashes_on_damaged_headers(gguf_file, data):
    """Damage confined to the header (the first 400 bytes), with the tensor data left whole."""
    path, seed = gguf_file
    head, rest = seed[:400], seed[400:]
    _check_gguf(path, data.draw(damaged(head)) + rest)


# ---- ONNX protobuf -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_file(work) -> tuple[Path, bytes]:
    folder = work / "onnx"
    folder.mkdir()
    return folder / "model.onnx", fz.onnx_seed()


def _info():
    from edgekit.manifest import ModelInfo

    return ModelInfo(architecture="llama", n_layers=1, hidden_size=4, n_heads=1, n_kv_heads=1, head_dim=4,
                     vocab_size=10, context_length=32)


def _check_onnx(path: Path, data: bytes) -> None:
    from edgekit.profiler.shape import ModelShape, onnx_shape

    expect(lambda: pb.read_onnx_graph(data), ValueError, pb.Graph)  # the reader's documented error
    path.write_bytes(data)
    expect(lambda: onnx_shape(path, _info(), "fp32", "text-generation"), ArtifactError, ModelShape)


def test_the_onnx_seed_reads(onnx_file):
    from edgekit.profiler.shape import onnx_shape

    path, seed = onnx_file
    graph = pb.read_onnx_graph(seed)
    assert [n.op_type for n in graph.nodes] == ["Gather", "MatMul", "MatMulNBits", "Softmax"]
    assert graph.nodes[2].attrs["K"] == 10 and graph.inputs[1] == ("past_key_values.0.key", 10)
    path.write_bytes(seed)
    shape = onnx_shape(path, _info(), "fp32", "text-generation")
    assert shape.flops_per_token == 2 * 4 * 10 + 2 * 10 * 10 and shape.kv_bytes_per_position == 2 * 4 * 2


@pytest.mark.parametrize("index", range(len(fz.huge_onnx())))
def test_onnx_with_huge_lengths_fails_fast(onnx_file, index):
    from edgekit.profiler.shape import onnx_shape

    data = fz.huge_onnx()[index]
    with pytest.raises(ValueError):
        pb.read_onnx_graph(data)
    path = onnx_file[0].with_name(f"huge-{index}.onnx")
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match="huge-"):
        onnx_shape(path, _info(), "fp32", "text-generation")


def test_onnx_tensor_with_huge_dims_is_counted_exactly(onnx_file):
    """An int4 initializer of 12 dimensions of 2**63-1: its size is an exact integer, not a float overflow."""
    from edgekit.profiler.shape import onnx_shape

    dims = [2**63 - 1] * 12
    data = pb.onnx_model([pb.node("MatMul", ["x", "T"], ["y"])], [pb.value_info("x", pb.FLOAT, (1, 4))], [],
                         [pb.tensor("T", 21, dims, b"")])
    (t,) = pb.read_onnx_graph(data).initializers
    assert t.dims == dims and t.nbytes == (2**63 - 1) ** 12 // 2
    path = onnx_file[0].with_name("huge-dims.onnx")
    path.write_bytes(data)
    assert onnx_shape(path, _info(), "int4", "text-generation").streamed_bytes == t.nbytes


@FUZZ
@given(data=st.data())
def test_onnx_reader_never_crashes(onnx_file, data):
    path, seed = onnx_file
    _check_onnx(path, data.draw(fuzzed(seed)))


# ---- the remote: its SSE stream (edgekit/router/sse.py) and chat completion --------------

@pytest.fixture(scope="module")
def replay():
    with fz.replay_server() as answer:
        yield answer


def _check_stream(replay, body: bytes) -> None:
    remote = replay(body, "text/event-stream")
    # RemoteUnavailable: the stream ended before its last chunk, or the server sent an error event
    events = expect(lambda: list(remote.stream_chat(fz.MESSAGES, max_tokens=64)), (RemoteProtocolError, RemoteUnavailable))
    for ev in events or ():
        assert isinstance(ev.text, str)


def _check_completion(replay, body: bytes) -> None:
    from edgekit.runtimes.base import GenerationResult

    remote = replay(body, "application/json")
    res = expect(lambda: remote.chat(fz.MESSAGES, max_tokens=64), RemoteProtocolError, GenerationResult)
    if res is not None:
        assert isinstance(res.text, str) and res.timings.prompt_tokens >= 0


def test_the_sse_seed_streams(replay):
    remote = replay(fz.sse(fz.SSE_CHUNKS), "text/event-stream")
    assert "".join(ev.text for ev in remote.stream_chat(fz.MESSAGES, max_tokens=64)) == "Hello é"
    assert replay(json_bytes(fz.COMPLETION), "application/json").chat(fz.MESSAGES, max_tokens=64).text == "Paris"


@FUZZ
@given(data=st.data())
@example(data=None)
def test_sse_parser_never_crashes(replay, data):
    seed = fz.sse(fz.SSE_CHUNKS)
    if data is None:
        for bad in (b"data: " + b"[" * 100_000 + b"\n\n", b"data: " + b"9" * 5000 + b"\n\n", b"\xff\xfe\n\n",
                    b"data: {}\n\n", b"data: []\n\n", b"data:\n\n", b"data: [DONE]", b"\r\r\r", b"data: " * 1000):
            _check_stream(replay, bad)
        return
    _check_stream(replay, data.draw(fuzzed(seed)))


WRONG = [[1], {"a": 1}, 1.5, float("inf"), float("nan"), -1, 2**70, "x", True, None]


@pytest.mark.parametrize("value", WRONG, ids=repr)
def test_sse_fields_of_the_wrong_type(replay, value):
    """Every field the client reads, holding each wrong type in turn (finish_reason, usage counts, content ...)."""
    for chunk in (fz.chunk({"content": "a"}, value), fz.chunk({"content": value}), fz.chunk(value), fz.chunk({}, "stop", usage=value),
                  fz.chunk({}, "stop", usage={"prompt_tokens": value}), {"choices": value}, {"choices": [value]},
                  {"choices": [], "usage": {"prompt_tokens": value}}, {"error": value}):
        _check_stream(replay, fz.sse([fz.SSE_CHUNKS[1], chunk, fz.SSE_CHUNKS[3]], comment=False))
    for where in (("choices", 0, "finish_reason"), ("choices", 0, "message", "content"), ("choices", 0, "message"),
                  ("usage", "prompt_tokens"), ("usage", "completion_tokens"), ("usage",), ("choices",)):
        body = copy.deepcopy(fz.COMPLETION)
        node = body
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        _check_completion(replay, json_bytes(body))


@FUZZ
@given(data=st.data())
def test_sse_parser_never_crashes_on_wrong_values(replay, data):
    chunks = data.draw(with_replaced_value(fz.SSE_CHUNKS))
    _check_stream(replay, fz.sse(chunks if isinstance(chunks, list) else [chunks], comment=False))


@FUZZ
@given(data=st.data())
def test_chat_completion_parser_never_crashes(replay, data):
    seed = json_bytes(fz.COMPLETION)
    body = data.draw(st.one_of(fuzzed(seed), with_replaced_value(fz.COMPLETION).map(json_bytes)))
    _check_completion(replay, body)


# ---- TOML: edgekit.toml and target profiles ---------------------------------------------------

def _check_config(path: Path, data: bytes) -> None:
    from edgekit.router.config import EdgekitConfig, load_config

    path.write_bytes(data)
    expect(lambda: load_config(path, env=False), ConfigError, EdgekitConfig)


def test_the_config_seed_reads(work):
    from edgekit.router.config import load_config

    path = work / "edgekit.toml"
    path.write_bytes(fz.CONFIG_TOML)
    cfg = load_config(path, env=False)
    assert cfg.remote.model == "smollm2" and cfg.policy.threshold == 0.3 and cfg.remote.extra_body == {"top_k": 40}


@FUZZ
@given(data=st.data())
@example(data=None)
def test_config_reader_never_crashes(work, data):
    path = work / "edgekit.toml"
    if data is None:
        for bad in fz.NESTED_TOML:
            _check_config(path, bad)
        return
    _check_config(path, data.draw(fuzzed(fz.CONFIG_TOML)))


def _toml_text(obj) -> bytes | None:
    try:
        return tomlio.dumps(obj).encode()
    except ConfigError:  # a value the TOML writer does not write (not an input this test is about)
        return None


@FUZZ
@given(data=st.data())
def test_config_reader_never_crashes_on_wrong_values(work, data):
    obj = data.draw(with_replaced_value(tomlio.loads(fz.CONFIG_TOML.decode(), "seed"), TOML_VALUES))
    text = _toml_text(obj) if isinstance(obj, dict) else None
    if text is not None:
        _check_config(work / "edgekit.toml", text)


def _profile_seed() -> bytes:
    from edgekit.targets.profile import preset_dir

    return (preset_dir() / "raspberry-pi-5.toml").read_bytes()


def _check_profile(path: Path, data: bytes) -> None:
    from edgekit.targets.profile import TargetProfile, load_profile_file

    path.write_bytes(data)
    expect(lambda: load_profile_file(path), ConfigError, TargetProfile)


def test_the_profile_seed_reads(work):
    from edgekit.targets.profile import load_profile_file

    path = work / "device.toml"
    path.write_bytes(_profile_seed())
    assert load_profile_file(path).name == "raspberry-pi-5"


@FUZZ
@given(data=st.data())
@example(data=None)
def test_target_profile_reader_never_crashes(work, data):
    path = work / "device.toml"
    if data is None:
        for bad in fz.NESTED_TOML:
            _check_profile(path, bad)
        return
    _check_profile(path, data.draw(fuzzed(_profile_seed())))


@FUZZ
@given(data=st.data())
def test_target_profile_reader_never_crashes_on_wrong_values(work, data):
    obj = data.draw(with_replaced_value(tomlio.loads(_profile_seed().decode(), "seed"), TOML_VALUES))
    text = _toml_text(obj) if isinstance(obj, dict) else None
    if text is not None:
        _check_profile(work / "device.toml", text)


# ---- calibration questions (JSON Lines) -------------------------------------------------------

def _check_questions(path: Path, data: bytes) -> None:
    from edgekit.router.calibration import load_questions

    path.write_bytes(data)
    qs = expect(lambda: load_questions(path), ConfigError, list)
    for q in qs or ():
        assert q.question and all(isinstance(a, str) for a in q.answers)
    expect(lambda: load_questions(path, limit=2), ConfigError, list)


def test_the_questions_seed_reads(work):
    from edgekit.router.calibration import load_questions

    path = work / "questions.jsonl"
    path.write_bytes(fz.jsonl(fz.QUESTIONS))
    assert [q.answers for q in load_questions(path)][1] == ("56", "fifty-six")


@FUZZ
@given(data=st.data())
@example(data=None)
def test_calibration_questions_reader_never_crashes(work, data):
    path = work / "questions.jsonl"
    if data is None:
        for bad in (b"[" * 100_000, b'{"question": ' * 100_000, b"9" * 5000, b"\xff\n", b"\n\n", b"{}\n"):
            _check_questions(path, bad)
        return
    seed = fz.jsonl(fz.QUESTIONS)
    body = data.draw(st.one_of(fuzzed(seed), with_replaced_value(fz.QUESTIONS).map(
        lambda rows: fz.jsonl(rows) if isinstance(rows, list) else json_bytes(rows))))
    _check_questions(path, body)


# ---- bench reports (predict --calibration) and the kept calibration ----------------------------

def _check_report(path: Path, data: bytes) -> None:
    from edgekit.profiler.api import calibration_from_report
    from edgekit.profiler.roofline import Calibration

    path.write_bytes(data)
    expect(lambda: calibration_from_report(path, "llama.cpp"), ConfigError, Calibration)


def test_the_report_seed_reads(work):
    from edgekit.profiler.api import calibration_from_report

    path = work / "bench.json"
    path.write_bytes(json_bytes(fz.report()))
    assert calibration_from_report(path, "llama.cpp").host_core_gflops == 222.7


@FUZZ
@given(data=st.data())
@example(data=None)
def test_bench_report_reader_never_crashes(work, data):
    path = work / "bench.json"
    if data is None:
        for bad in (b"[" * 100_000, b"9" * 5000, b"\xff", json_bytes({"schema": "edgekit.bench", "results": 5}),
                    json_bytes({"schema": "edgekit.bench", "results": [{"calibration": 1}]})):
            _check_report(path, bad)
        return
    seed = fz.report()
    body = data.draw(st.one_of(fuzzed(json_bytes(seed)), with_replaced_value(seed).map(json_bytes)))
    _check_report(path, body)


@pytest.fixture(scope="module")
def own_cache(work):
    with pytest.MonkeyPatch.context() as mp:  # the kept calibration of this test stays out of the suite's cache
        mp.setenv("EDGEKIT_CACHE", str(work / "cache"))
        yield work / "cache"


@FUZZ
@given(data=st.data())
def test_kept_calibration_reader_never_crashes(own_cache, data):
    """A damaged kept calibration (the cache) reads as none: predict then calibrates again."""
    from edgekit.profiler.roofline import Calibration, load_calibration

    path = own_cache / "calibration" / "llamacpp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = fz.calibration()
    path.write_bytes(data.draw(st.one_of(fuzzed(json_bytes(seed)), with_replaced_value(seed).map(json_bytes),
                                         st.just(b"[" * 100_000))))
    cal = load_calibration("llama.cpp")
    assert cal is None or isinstance(cal, Calibration)
