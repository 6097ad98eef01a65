"""Bad input to the runtime: one clear error each, never a crash of the interpreter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import edgekit
from edgekit import GenerationConfig
from edgekit.errors import ArtifactError, ConfigError, ContextOverflowError, UnsupportedModelError
from edgekit.exporters.onnx import export_onnx
from tests.conftest import error_line, run_cli


@pytest.fixture(scope="module")
def tiny_art(tiny_llama, tmp_path_factory):
    return export_onnx(tiny_llama, tmp_path_factory.mktemp("rt") / "tiny-llama").path


@pytest.fixture(scope="module")
def tiny_enc(tiny_bert, tmp_path_factory):
    return export_onnx(tiny_bert, tmp_path_factory.mktemp("rt") / "tiny-bert").path


def test_tiny_model_generates_and_chats(tiny_art):
    m = edgekit.load(tiny_art)
    assert m.kind == "decoder" and m.backend == "onnx" and m.context_length == 256
    r = m.generate("The capital of France is", max_tokens=8, ignore_eos=True)
    assert len(r.token_ids) == 8 and all(0 < p <= 1 for p in r.probs)
    assert m.render_chat([{"role": "user", "content": "hi"}]).endswith("<|im_start|>assistant\n")
    assert m.chat([{"role": "user", "content": "hi"}], max_tokens=4).token_ids


def test_bare_onnx_file_loads(tiny_art):
    m = edgekit.load(tiny_art / "model.onnx")
    assert m.kind == "decoder" and m.manifest is None
    assert m.generate("hello", max_tokens=3, ignore_eos=True).token_ids == edgekit.load(tiny_art).generate(
        "hello", max_tokens=3, ignore_eos=True).token_ids


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not an edgekit artifact"):
        edgekit.load(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        edgekit.load(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ArtifactError, match="neither an artifact folder"):
        edgekit.load(tmp_path / "notes.txt")


def test_corrupt_and_truncated_onnx(tiny_art, tmp_path):
    bad = tmp_path / "model.onnx"
    data = (tiny_art / "model.onnx").read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        edgekit.load(bad)
    bad.write_bytes(b"this is not protobuf at all" * 10)
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        edgekit.load(bad)


def test_corrupt_and_truncated_gguf(smollm2_gguf, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" + b"\0" * 100)
    with pytest.raises(ArtifactError, match="not a GGUF file"):
        edgekit.load(bad)
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as src:
        cut.write_bytes(src.read(5_000_000))
    # in a fresh interpreter: llama.cpp must report, not crash the process
    code = (
        "import edgekit, sys\n"
        "from edgekit.errors import ArtifactError\n"
        f"try:\n    edgekit.load({str(cut)!r})\nexcept ArtifactError as e:\n    print('ERR', e); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "could not be loaded by llama.cpp" in proc.stdout


def test_hash_mismatch_names_the_file(tiny_art, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_art, copy)
    cfg = json.loads((copy / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 12345
    (copy / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="'tokenizer_config.json' (is|does not match)"):
        edgekit.load(copy)


def test_context_overflow_names_both_lengths(tiny_art):
    m = edgekit.load(tiny_art, context=32)
    prompt = "hello world " * 40
    n = m.count_tokens(prompt)
    with pytest.raises(ContextOverflowError) as info:
        m.generate(prompt)
    assert info.value.prompt_tokens == n and info.value.context == 32
    assert str(n) in str(info.value) and "32" in str(info.value)


def test_unknown_and_invalid_config_values(tiny_art):
    m = edgekit.load(tiny_art)
    with pytest.raises(ConfigError, match="unknown generation setting.*bogus"):
        m.generate("hi", bogus=1)
    for bad in ({"temperature": -1}, {"top_p": 0}, {"max_tokens": 0}, {"top_k": -2}, {"repetition_penalty": 0}, {"stop": [""]}):
        with pytest.raises(ConfigError, match="invalid generation config"):
            m.generate("hi", **bad)
    with pytest.raises(ConfigError, match="threads"):
        edgekit.load(tiny_art, threads=0)
    with pytest.raises(ConfigError, match="messages"):
        m.chat("not a list")


def test_wrong_kind(tiny_art, tiny_enc):
    dec, enc = edgekit.load(tiny_art), edgekit.load(tiny_enc)
    with pytest.raises(UnsupportedModelError, match="embed needs an encoder"):
        dec.embed(["x"])
    with pytest.raises(UnsupportedModelError, match="needs a text-generation artifact"):
        enc.generate("x")
    assert enc.embed(["a", "b"]).shape == (2, 64)


def test_chat_without_template_is_clear(tiny_llama, tmp_path):
    src = tmp_path / "no-template"
    shutil.copytree(tiny_llama, src)
    cfg = json.loads((src / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (src / "tokenizer_config.json").write_text(json.dumps(cfg))
    m = edgekit.load(export_onnx(src, tmp_path / "art").path)
    with pytest.raises(ConfigError, match="no chat template"):
        m.chat([{"role": "user", "content": "hi"}])
    assert m.generate("plain generate still works", max_tokens=2, ignore_eos=True).token_ids


@pytest.mark.parametrize("kind", ["onnx", "gguf"])
def test_runtime_never_imports_torch(kind, tiny_art, smollm2_gguf):
    path = tiny_art if kind == "onnx" else smollm2_gguf
    code = (
        "import sys, edgekit\n"
        f"m = edgekit.load({str(path)!r}, threads=1)\n"
        "r = m.generate('hello', max_tokens=3, ignore_eos=True)\n"
        "assert len(r.token_ids) == 3\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'transformers', 'optimum'))\n"
        "print('HEAVY', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout


def test_generation_config_from_dict():
    assert GenerationConfig.from_dict({"max_tokens": 5, "stop": "x"}).stop == ("x",)
    with pytest.raises(ConfigError, match="unknown generation setting"):
        GenerationConfig.from_dict({"max_new_tokens": 5})


def test_gguf_small_context_overflow_and_budget(smollm2_gguf):
    m = edgekit.load(smollm2_gguf, threads=1, context=64)
    assert m.context_length == 64
    with pytest.raises(ContextOverflowError, match="64 tokens"):
        m.generate("word " * 100)
    ids = m.tokenize("word " * 50)
    r = m.generate_ids(ids, max_tokens=50, ignore_eos=True)
    assert len(ids) + len(r.token_ids) == 64 and r.finish_reason == "length"


def test_same_thread_reentry_is_refused_not_corrupted(tiny_art):
    m = edgekit.load(tiny_art)
    expected = m.generate("hello", max_tokens=6, ignore_eos=True).token_ids
    stream = m.stream("hello", max_tokens=6, ignore_eos=True)
    first = next(stream)
    with pytest.raises(ConfigError, match="busy with an unfinished stream"):
        m.generate("other", max_tokens=2)
    rest = [e.token_id for e in stream]
    assert [first.token_id, *rest] == expected  # the open stream was not disturbed
    assert m.generate("hello", max_tokens=6, ignore_eos=True).token_ids == expected


# ---- errors that name the real cause ---------------------------------------------------------------
def test_a_context_larger_than_memory_is_refused_before_llama_cpp_tries(smollm2_gguf, tmp_path):
    """100M positions of SmolLM2's KV cache are terabytes: a ConfigError naming --context and what fits,
    not a 'corrupt or truncated' file after llama.cpp spent seconds failing to allocate it."""
    import re

    with pytest.raises(ConfigError) as info:
        edgekit.load(smollm2_gguf, threads=1, context=100_000_000)
    msg = str(info.value)
    assert info.value.params == ("context",) and "KV cache" in msg and "available" in msg
    assert "corrupt" not in msg and "trained on 8192" in msg
    fits = int(re.search(r"at most about (\d+) tokens", msg).group(1))
    assert 4096 < fits < 100_000_000  # this machine holds far more than 4096 positions (~90 MB)
    proc = run_cli("run", smollm2_gguf, "--context", "100000000", "-p", "hi", "-n", "1")
    line = error_line(proc)
    assert proc.returncode == 2 and line.startswith("edgekit: error: --context 100000000 needs") and "KV cache" in line


def test_llama_cpp_load_failures_are_classified_before_blaming_the_file(tmp_path):
    """llama-cpp-python's own messages: a context it could not create is not a damaged file."""
    from edgekit.translate import translate

    path = tmp_path / "m.gguf"
    ctx = translate(ValueError("Failed to create llama_context"), "llama.cpp", "load", path=path, context=4096)
    assert type(ctx) is ConfigError and ctx.params == ("context",)  # the user's to fix: exit 2
    assert "could not create a context of 4096 tokens" in str(ctx)
    assert "corrupt" not in str(ctx) and "smaller context" in str(ctx)
    bad = translate(ValueError(f"Failed to load model from file: {path}"), "llama.cpp", "load", path=path, context=4096)
    assert isinstance(bad, ArtifactError) and "corrupt or truncated" in str(bad)


def test_a_folder_where_a_file_belongs_is_called_a_folder(tmp_path):
    from edgekit.quality import load_prompts
    from edgekit.router.calibration import load_questions
    from edgekit.router.config import find_config
    from edgekit.targets.profile import load_profile_file

    for call in (load_prompts, load_questions, find_config, load_profile_file):
        with pytest.raises(ConfigError, match="is a folder, not a file"):
            call(tmp_path)
        with pytest.raises(ConfigError, match="does not exist"):
            call(tmp_path / "missing")
    proc = run_cli("calibrate", tmp_path / "model.gguf", "--data", tmp_path, "--config", tmp_path / "edgekit.toml")
    assert proc.returncode == 2 and f"{tmp_path} is a folder, not a file" in error_line(proc)
