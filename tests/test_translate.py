"""The translation table (edgekit.translate) fed the real libraries' exceptions: type, message and cause."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from edgekit.errors import (
    ArtifactError,
    BackendError,
    EdgekitError,
    ExportError,
    RemoteProtocolError,
    RemoteTimeout,
    RemoteUnavailable,
    SourceError,
)
from edgekit.translate import TABLE, catches, translate, translated


def _raised(library: str, phase: str, call, **fields) -> EdgekitError:
    with pytest.raises(EdgekitError) as info:
        with translated(library, phase, **fields):
            call()
    err = info.value
    assert err.__cause__ is not None and not isinstance(err.__cause__, EdgekitError)
    return err


# ---- onnxruntime ------------------------------------------------------------------------------------------
def test_onnxruntime_garbage_file_is_an_artifact_error(tmp_path):
    import onnxruntime as ort
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(256)) * 3)
    err = _raised("onnxruntime", "load", lambda: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]),
                  path=path)
    assert type(err) is ArtifactError
    assert str(err).startswith(f"{path} is not a loadable ONNX model (corrupt or truncated?): ")
    assert "\n" not in str(err) and type(err.__cause__).__module__.startswith("onnxruntime")


def _identity_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    path = tmp_path / "id.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnxruntime_run_failure_is_a_backend_error(tmp_path):
    import onnxruntime as ort
    session = ort.InferenceSession(str(_identity_model(tmp_path)), providers=["CPUExecutionProvider"])
    err = _raised("onnxruntime", "run", lambda: session.run(["y"], {"x": np.zeros(3, dtype=np.int64)}))
    assert type(err) is BackendError
    assert str(err).startswith("onnxruntime failed while running the model: ") and "\n" not in str(err)
    assert type(err.__cause__).__name__ == "InvalidArgument"


# ---- tokenizers ---------------------------------------------------------------------------------------
def test_tokenizers_bad_file_is_an_artifact_error(tmp_path):
    from tokenizers import Tokenizer

    path = tmp_path / "tokenizer.json"
    path.write_text('{"version": 1')
    err = _raised("tokenizers", "load", lambda: Tokenizer.from_file(str(path)), path=path)
    assert type(err) is ArtifactError and type(err.__cause__) is Exception  # tokenizers has no type of its own
    assert str(err) == f"{path} is not a valid tokenizer file ({err.__cause__}): re-export the artifact"


def test_hf_tokenizer_keeps_its_message(tmp_path):
    from edgekit.runtimes.tokenizer import HFTokenizer

    (tmp_path / "tokenizer.json").write_bytes(b"\x00garbage")
    with pytest.raises(ArtifactError, match="tokenizer.json is not a valid tokenizer file .*re-export the artifact"):
        HFTokenizer(tmp_path)


def test_a_subclass_of_exception_is_not_taken_for_a_bare_tokenizers_error():
    class Ours(Exception):
        pass

    assert catches(Exception("x"), "tokenizers", "load") and not catches(Ours("x"), "tokenizers", "load")


# ---- llama.cpp ------------------------------------------------------------------------------------------
def test_llama_cpp_garbage_file_is_an_artifact_error(tmp_path):
    import llama_cpp
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + bytes(500))
    err = _raised("llama.cpp", "load", lambda: llama_cpp.Llama(model_path=str(path), verbose=False),
                  path=path, context=4096)
    assert type(err) is ArtifactError and type(err.__cause__) is ValueError
    assert str(err) == f"{path} could not be loaded by llama.cpp (corrupt or truncated?): {err.__cause__}"


@pytest.mark.parametrize("text", ["Failed to create llama_context", "Failed to create llama_batch"])
def test_llama_cpp_context_failures_are_config_errors(tmp_path, text):
    """llama_cpp/_internals.py raises ValueError with these exact texts when the context cannot be made:
    a smaller context is the user's fix (exit 2), the file is fine."""
    from edgekit.errors import ConfigError

    path = tmp_path / "m.gguf"
    err = translate(ValueError(text), "llama.cpp", "load", path=path, context=4096)
    assert type(err) is ConfigError and err.params == ("context",)
    assert str(err) == (f"llama.cpp loaded {path} but could not create a context of 4096 tokens (out of memory?): "
                        f"pass a smaller context, or free memory: {text}")


def test_llama_cpp_eval_failure_is_a_backend_error():
    err = _raised("llama.cpp", "eval", lambda: (_ for _ in ()).throw(RuntimeError("llama_decode returned 1")),
                  tokens=7)  # the text llama_cpp/_internals.py raises
    assert type(err) is BackendError and str(err) == "llama.cpp failed to evaluate 7 tokens: llama_decode returned 1"


def test_llama_cpp_vocab_failure_is_an_artifact_error(tmp_path):
    err = translate(ValueError("Failed to load model from file: x"), "llama.cpp", "vocab", path=tmp_path / "m.gguf")
    assert type(err) is ArtifactError
    assert str(err) == (f"llama.cpp could not read the vocabulary of {tmp_path / 'm.gguf'} "
                        "(Failed to load model from file: x): re-export it")


# ---- jinja2 (chat templates) -----------------------------------------------------------------------------
def test_chat_template_errors_are_config_errors():
    from edgekit.errors import ConfigError
    from edgekit.runtimes.chat import render

    with pytest.raises(ConfigError, match="^the model's chat template does not compile: ") as info:
        render("{% for m in messages %}", [{"role": "user", "content": "hi"}])
    assert type(info.value.__cause__).__name__ == "TemplateSyntaxError"
    with pytest.raises(ConfigError, match="^the model's chat template failed on these messages: ") as info:
        render("{{ messages[0].content.nope() }}", [{"role": "user", "content": "hi"}])
    assert type(info.value.__cause__).__name__ == "UndefinedError"
    with pytest.raises(ConfigError, match="^the chat template refused the messages: no") as info:  # ours, as it is
        render("{{ raise_exception('no') }}", [{"role": "user", "content": "hi"}])
    assert info.value.__cause__ is None


# ---- safetensors, huggingface_hub, onnx ---------------------------------------------------------------------
def test_truncated_safetensors_is_a_source_error(tmp_path):
    import safetensors.numpy as st
    from safetensors import safe_open

    path = tmp_path / "model.safetensors"
    st.save_file({"w": np.zeros(64, dtype=np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-40])
    err = _raised("safetensors", "read", lambda: safe_open(str(path), "numpy"), path=path)
    assert type(err) is SourceError and type(err.__cause__).__name__ == "SafetensorError"
    assert str(err).startswith(f"{path} is not a valid safetensors file (") and "re-download" in str(err)


def test_hub_errors_are_source_errors():
    import huggingface_hub as hub
    err = _raised("huggingface_hub", "fetch", lambda: hub.snapshot_download("bad id!!"), repo_id="bad id!!")
    assert type(err) is SourceError and type(err.__cause__).__name__ == "HFValidationError"
    assert str(err).startswith("bad id!! is not a local folder and could not be fetched from the hub: Repo id must")


def test_anything_raised_inside_a_pure_python_library_is_its_error():
    """A KeyError from inside onnx's own code is onnx's failure; the same KeyError from ours is a bug."""
    import onnx  # noqa: F401 (the library must be there: no skip)
    from onnx import helper

    err = _raised("onnx", "quantize", lambda: helper.tensor_dtype_to_np_dtype(999), method="int8")
    assert type(err) is ExportError and str(err) == "int8 quantization failed: KeyError: 999"
    with pytest.raises(KeyError):
        with translated("onnx", "quantize", method="int8"):
            {}[999]


def test_torch_index_error_in_the_reference_model_is_an_export_error():
    """torch raises IndexError for a token id past the embedding table: its failure, not a bug of ours."""
    import torch
    err = _raised("transformers", "reference",
                  lambda: torch.nn.functional.embedding(torch.tensor([5]), torch.zeros(2, 2)), name="tiny")
    assert type(err) is ExportError and type(err.__cause__) is IndexError
    assert str(err).startswith("the gate's reference model (transformers) failed on tiny: IndexError: index out of range")


# ---- httpx ----------------------------------------------------------------------------------------------
_HTTPX = dict(where="the remote at http://127.0.0.1", connect_timeout=2.0, read_timeout=3.0)


def test_httpx_refused_connection_is_remote_unavailable():
    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens there
    try:
        httpx.post(f"http://127.0.0.1:{port}/", timeout=2)
    except httpx.TransportError as exc:
        err = translate(exc, "httpx", "send", dropped="is unreachable", detail=str(exc), **_HTTPX)
    assert type(err) is RemoteUnavailable and str(err).startswith("the remote at http://127.0.0.1 is unreachable: ")


def test_httpx_read_timeout_is_remote_timeout():
    import httpx
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # accepts (the kernel does) and never answers
        try:
            httpx.get(f"http://127.0.0.1:{server.getsockname()[1]}/", timeout=0.2)
        except httpx.TransportError as exc:
            err = translate(exc, "httpx", "send", dropped="is unreachable", detail=str(exc), **_HTTPX)
    assert type(err) is RemoteTimeout
    assert str(err) == "the remote at http://127.0.0.1 sent nothing for 3 s (read timeout)"
    connect = translate(httpx.ConnectTimeout("timed out"), "httpx", "send", dropped="", detail="", **_HTTPX)
    assert type(connect) is RemoteTimeout and "did not accept the connection within 2 s" in str(connect)


def test_httpx_undecodable_body_is_a_protocol_error():
    import httpx
    with pytest.raises(RemoteProtocolError) as info:
        try:  # httpx decodes a body given whole as it builds the response
            httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"not gzip").read()
        except httpx.HTTPError as exc:
            raise translate(exc, "httpx", "send", what="stream", detail=str(exc), dropped="", **_HTTPX) from exc
    assert str(info.value).startswith("the remote at http://127.0.0.1 sent an unreadable stream: ")
    assert type(info.value.__cause__).__name__ == "DecodingError"


# ---- bugs propagate -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("row", sorted(TABLE))
def test_our_bugs_propagate_unchanged_through_every_row(row):
    for bug in (TypeError("ours"), KeyError("ours"), AssertionError("ours"), AttributeError("ours"), MemoryError()):
        with pytest.raises(type(bug)) as info:
            with translated(*row):
                raise bug
        assert info.value is bug and info.value.__cause__ is None
    ours = ArtifactError("ours")  # an edgekit error raised inside the block (a callback of ours) stays as it is
    with pytest.raises(ArtifactError) as info:
        with translated(*row):
            raise ours
    assert info.value is ours


def test_translate_re_raises_what_it_does_not_cover_and_unknown_rows_are_bugs():
    bug = TypeError("ours")
    with pytest.raises(TypeError) as info:
        translate(bug, "onnxruntime", "run")
    assert info.value is bug
    with pytest.raises(KeyError):
        translate(RuntimeError("x"), "onnxruntime", "no-such-phase")


def test_every_row_says_what_the_library_raises():
    assert all(rule.raises and rule.make for rule in TABLE.values())
    assert {lib for lib, _ in TABLE} >= {"onnxruntime", "llama.cpp", "tokenizers", "safetensors", "huggingface_hub",
                                         "httpx", "transformers", "optimum", "onnx"}


def test_the_table_imports_no_library():
    code = ("import sys, edgekit.translate; heavy = {'onnxruntime', 'llama_cpp', 'httpx', 'transformers', 'torch', "
            "'tokenizers', 'safetensors', 'huggingface_hub', 'onnx', 'optimum'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
