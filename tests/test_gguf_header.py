"""edgekit/gguf_header.py: the GGUF header walker, and the vocabulary check that keeps llama.cpp from aborting.

A GGUF whose ``tokenizer.ggml.tokens`` repeats a token makes llama.cpp abort the whole process
(SIGABRT, exit 134) while loading it; edgekit refuses such a bare file before llama.cpp sees it.
The tiny file written here is one llama.cpp aborts on: its metadata is complete enough to reach
the vocabulary (without the repeat, llama.cpp fails later, on the missing tensors, with an error).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import ArtifactError
from tests.conftest import error_line

TOKENS = ["<unk>", "<s>", "</s>", "a", "b", "c"]


def write_gguf(path: Path, tokens: list[str]) -> Path:
    """A tiny llama GGUF with a SentencePiece-style vocabulary of ``tokens`` (and no layers)."""
    import gguf

    n = len(tokens)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n)
    w.add_token_types([1] * n)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_tensor("token_embd.weight", np.zeros((n, 8), np.float32))
    w.add_tensor("output_norm.weight", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def duplicated(tmp_path) -> Path:
    return write_gguf(tmp_path / "dup.gguf", TOKENS[:5] + ["a"])  # token 5 repeats token 3


@pytest.mark.parametrize("command", [["run", "-p", "hi", "-n", "2"], ["bench", "--runs", "1", "--warmup", "0"]])
def test_the_cli_refuses_duplicate_tokens_in_one_line(cli, duplicated, command):
    proc = cli(command[0], duplicated, *command[1:], "--threads", "1", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]  # llama.cpp itself would abort: -6 (SIGABRT)
    line = error_line(proc)
    assert "dup.gguf has duplicate tokens" in line and "'a' is token 3 and token 5" in line
    assert "edgekit export gguf" in line  # what to do
    assert proc.stdout == ""


def test_the_api_refuses_it_too(duplicated):
    import edgekit
    from edgekit.artifact import resolve_artifact

    for call in (lambda: resolve_artifact(duplicated), lambda: edgekit.load(duplicated)):
        with pytest.raises(ArtifactError, match="duplicate tokens"):
            call()


def test_distinct_tokens_pass_and_the_walker_reads_them_as_bytes(tmp_path):
    from edgekit.artifact import resolve_artifact
    from edgekit.gguf_header import TOKENS_KEY, check_gguf_vocab, read_gguf_header

    path = write_gguf(tmp_path / "ok.gguf", TOKENS)
    check_gguf_vocab(path)
    assert resolve_artifact(path).format == "gguf"
    meta, tensors = read_gguf_header(path, arrays=(TOKENS_KEY,))
    assert meta[TOKENS_KEY] == [t.encode() for t in TOKENS]
    assert meta["llama.block_count"] == 1 and meta["tokenizer.ggml.scores"] is None  # other arrays: skipped
    assert [name for name, _d, _t in tensors] == ["token_embd.weight", "output_norm.weight"]
    assert read_gguf_header(path, tensors=False)[1] == []
    assert read_gguf_header(path)[0][TOKENS_KEY] is None  # not asked for


def test_duplicates_as_llama_cpp_counts_them():
    from edgekit.gguf_header import duplicate_tokens

    assert duplicate_tokens([b"a", b"b", b"c"]) == []
    assert duplicate_tokens([b"a", b"b", b"a", b"b"]) == [(b"a", 0, 2), (b"b", 1, 3)]
    assert duplicate_tokens([b"", b"x", b""]) == []  # empty tokens are named [EMPTY_<id>]: distinct
    assert duplicate_tokens([b"[EMPTY_2]", b"x", b""]) == [(b"[EMPTY_2]", 0, 2)]  # ... which can collide
    assert duplicate_tokens(["é".encode(), "e\u0301".encode()]) == []  # bytes, not normalised text


def test_an_unreadable_header_is_left_to_the_loader(tmp_path):
    """The vocabulary check judges only the vocabulary: damage keeps the loader's own messages."""
    import edgekit
    from edgekit.gguf_header import check_gguf_vocab

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" + b"\0" * 100)
    check_gguf_vocab(bad)
    with pytest.raises(ArtifactError, match="not a GGUF file"):
        edgekit.load(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    check_gguf_vocab(empty)
