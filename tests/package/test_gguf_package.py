"""GGUF packages (a tiny random llama, seconds): the .gguf as it is, llama.cpp settings, a checked tokenizer.json."""

from __future__ import annotations

import json
import shutil

import pytest

import edgekit
from edgekit.errors import ConfigError
from edgekit.fileio import sha256_file


def test_gguf_package_for_a_target(tiny_gguf_artifact, tiny_src, target_file, tmp_path):
    art = tiny_gguf_artifact
    pkg = edgekit.package(art.path, tmp_path / "pkg", target=target_file(2.0))
    m = pkg.manifest
    assert m.platform == "android" and m.format == "gguf" and m.runtime == "llama.cpp"
    assert sha256_file(pkg.path / m.model_file) == sha256_file(art.path / art.manifest.model_file)  # as it is
    runtime = json.loads((pkg.path / "runtime.json").read_text())
    assert runtime["context_params"]["n_threads"] == 3 == m.threads  # the target's big cores
    assert runtime["context_params"]["n_ctx"] == 256 == m.context  # the tiny model's trained context
    assert runtime["model_params"] == {"use_mmap": True, "use_mlock": False, "n_gpu_layers": 0}
    assert m.tokenizer.file == "tokenizer.json" and m.tokenizer.in_model_file
    assert sha256_file(pkg.path / "tokenizer.json") == sha256_file(tiny_src / "tokenizer.json")
    assert m.tokenizer.special_tokens["eos_token"].text == "<|im_end|>"
    assert m.chat.exact and m.chat.generation_prompt == "<|im_start|>assistant\n"
    assert m.memory.fits and m.memory.kv_bytes == m.memory.kv_bytes_per_position * 256
    assert pkg.size_report["model_bytes"] == (pkg.path / m.model_file).stat().st_size
    assert "required_operators.config" not in {f.path for f in m.files}


def test_gguf_package_without_mmap_for_ios(tiny_gguf_artifact, tmp_path):
    pkg = edgekit.package(tiny_gguf_artifact.path, tmp_path / "pkg", platform="ios", mmap=False, context=128)
    runtime = json.loads((pkg.path / "runtime.json").read_text())
    assert runtime["model_params"]["use_mmap"] is False and runtime["model_params"]["n_gpu_layers"] is None
    assert runtime["context_params"]["n_ctx"] == 128 and pkg.manifest.threads == 2  # the iOS default


def test_a_changed_source_tokenizer_is_left_out(tiny_gguf_artifact, tiny_src, tmp_path):
    """The source folder's tokenizer.json is shipped only when llama.cpp's vocabulary tokenizes like it."""
    tok_path = tiny_src / "tokenizer.json"
    original = tok_path.read_bytes()
    data = json.loads(original)
    vocab = data["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two ids swapped: a different tokenizer
    try:
        tok_path.write_text(json.dumps(data))
        pkg = edgekit.package(tiny_gguf_artifact.path, tmp_path / "pkg", platform="android")
    finally:
        tok_path.write_bytes(original)
    assert pkg.manifest.tokenizer.file is None and "differs" in pkg.manifest.tokenizer.note
    assert not (pkg.path / "tokenizer.json").exists()


def test_too_small_target_is_refused_with_the_numbers(tiny_gguf_artifact, target_file, tmp_path):
    out = tmp_path / "pkg"
    with pytest.raises(ConfigError) as info:
        edgekit.package(tiny_gguf_artifact.path, out, target=target_file(0.00001))  # 10 KB
    message = str(info.value)
    assert "does not fit" in message and "weights" in message and "KV cache" in message and "test-phone" in message
    assert not out.exists() and not list(tmp_path.glob(".pkg*"))  # nothing at OUT, no staging folder left


def test_context_that_does_not_fit_names_one_that_does(tiny_gguf_artifact, target_file, tmp_path):
    art = tiny_gguf_artifact
    pkg = edgekit.package(art.path, tmp_path / "probe")
    weights, per_pos = pkg.manifest.memory.weights_bytes, pkg.manifest.memory.kv_bytes_per_position
    budget_gb = (weights + per_pos * 200) / 1e9  # room for 200 positions
    with pytest.raises(ConfigError, match=r"at context=256: .* use context=128 or less"):
        edgekit.package(art.path, tmp_path / "pkg", target=target_file(budget_gb), context=256)
    with pytest.raises(ConfigError, match="does not fit"):  # 128 fits, but auto never goes below 512 positions
        edgekit.package(art.path, tmp_path / "pkg2", target=target_file(budget_gb))
    assert edgekit.package(art.path, tmp_path / "pkg3", target=target_file(budget_gb), context=128).manifest.memory.fits


def test_force_replaces_a_package_but_not_a_folder_with_other_files(tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    edgekit.package(tiny_gguf_artifact.path, out)
    edgekit.package(tiny_gguf_artifact.path, out, platform="ios", force=True)
    from edgekit.package import read_package

    assert read_package(out).platform == "ios"
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not part of"):
        edgekit.package(tiny_gguf_artifact.path, out, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    shutil.rmtree(out)
