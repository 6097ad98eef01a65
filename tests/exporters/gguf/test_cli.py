"""``edgekit export gguf`` through the real command line: the README's command, every bad input, the delegate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import error_line

HERE = Path(__file__).parent


@pytest.mark.slow
def test_readme_command_exports_smollm2_q4_k_m(cli, tmp_path):
    out = tmp_path / "smollm2-q4_k_m"
    proc = cli("export", "gguf", "packaged:smollm2", "-o", out, "--quant", "q4_k_m", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    m = data["manifest"]
    assert m["format"] == "gguf" and m["precision"] == "q4_k_m" and m["gate"]["status"] == "passed"
    assert [g["precision"] for g in m["stage_gates"]] == ["f16"]
    assert (out / m["model_file"]).is_file() and (out / "edgekit.json").is_file()
    for step in ("convert: tokenizer", "convert: 272 tensors", "gate: reference model", "quantize: q4_k_m", "gate q4_k_m: PASSED"):
        assert step in proc.stderr, step
    assert "falling back" not in proc.stderr  # llama.cpp's per-tensor report is collected, not printed
    inspect = cli("inspect", out)
    assert inspect.returncode == 0 and "verified" in inspect.stdout and "llama.cpp" in inspect.stdout


def _assert_user_error(proc, out: Path, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    for needle in needles:
        assert needle in line, line
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), "something was left at OUT"
    return line


def test_bad_sources(cli, tmp_path, tiny_llama):
    out = tmp_path / "out"
    _assert_user_error(cli("export", "gguf", tmp_path / "nope", "-o", out), out, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_user_error(cli("export", "gguf", empty, "-o", out), out, "not a Hugging Face model folder")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_llama, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _assert_user_error(cli("export", "gguf", corrupt, "-o", out), out, "not a valid safetensors file")


def test_pickle_only_weights(cli, tmp_path):
    from tests.builders import make_tiny_decoder

    src = make_tiny_decoder(tmp_path / "pickled", "llama", safetensors=False)
    out = tmp_path / "out"
    _assert_user_error(cli("export", "gguf", src, "-o", out), out, "pickle", "--allow-pickle")
    _assert_user_error(cli("export", "gguf", src, "-o", out, "--allow-pickle"), out, "safetensors")


def test_bad_outputs_and_options(cli, tmp_path, tiny_llama):
    existing = tmp_path / "exists"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    proc = cli("export", "gguf", tiny_llama, "-o", existing)
    assert proc.returncode == 2 and "already exists" in error_line(proc) and (existing / "keep.txt").read_text() == "mine"
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    out = blocker / "out"
    proc = cli("export", "gguf", tiny_llama, "-o", out)
    assert proc.returncode == 2 and "not a folder" in error_line(proc)
    out = tmp_path / "out"
    line = _assert_user_error(cli("export", "gguf", tiny_llama, "-o", out, "--quant", "q3_k"), out, "q3_k")
    for name in ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"):
        assert name in line
    _assert_user_error(cli("export", "gguf", tiny_llama, "-o", out, "--threshold", "bogus=1"), out, "bogus")
    _assert_user_error(cli("export", "gguf", tiny_llama, "-o", out, "--llama-cpp-converter", tmp_path / "none.py"),
                       out, "does not exist", "convert_hf_to_gguf.py")


def test_unsupported_models(cli, tmp_path, tiny_bert):
    import torch
    import transformers

    from tests.builders import make_bpe_tokenizer

    gpt2 = tmp_path / "gpt2"
    vocab = make_bpe_tokenizer(gpt2)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=1, n_head=2)).save_pretrained(gpt2)
    out = tmp_path / "out"
    _assert_user_error(cli("export", "gguf", gpt2, "-o", out), out, "'gpt2'", "llama", "qwen2", "--llama-cpp-converter")
    _assert_user_error(cli("export", "gguf", tiny_bert, "-o", out), out, "text-generation")


def test_tokenizer_llama_cpp_cannot_express(cli, tmp_path, tiny_llama):
    """A BPE tokenizer that splits on whitespace only: no llama.cpp pre-tokenizer does that."""
    from tokenizers import Tokenizer, pre_tokenizers

    src = tmp_path / "odd-tokenizer"
    shutil.copytree(tiny_llama, src)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(use_regex=False)])
    tok.save(str(src / "tokenizer.json"))
    out = tmp_path / "out"
    _assert_user_error(cli("export", "gguf", src, "-o", out), out, "pre-tokenizer", "tokenize differently")


def test_llama_cpp_converter_delegate(cli, tmp_path, tiny_llama):
    script = HERE / "converter_script.py"
    out = tmp_path / "out"
    proc = cli("export", "gguf", tiny_llama, "-o", out, "--quant", "q8_0", "--llama-cpp-converter", script, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout)["manifest"]
    assert m["quantization"]["params"]["converter"] == "converter_script.py" and m["gate"]["status"] == "passed"
    assert "convert: converter_script.py" in proc.stderr
    failing = cli("export", "gguf", tiny_llama, "-o", tmp_path / "fail", env={
        "EDGEKIT_LLAMA_CPP_CONVERTER": str(script), "EDGEKIT_TEST_CONVERTER_FAIL": "1"})
    assert failing.returncode == 1 and "FancyForCausalLM is not supported" in error_line(failing)
    assert not (tmp_path / "fail").exists()
