"""optimize's cache on the tiny random decoder (seconds): the key follows the source's content, and an entry
that is damaged in any way is found out and made again, never used and never a crash."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest

from edgekit import quants
from edgekit.optimize import cache, plan
from edgekit.progress import Progress
from edgekit.sources import resolve_source


def _key(source) -> str:
    facts = plan.source_facts(resolve_source(source), None)
    return plan.cache_key(facts, quants.export_quant("gguf", "q8_0"), {}, "prompts", "code")


def test_the_key_changes_with_the_source_content(tmp_path, tiny_llama):
    src = tmp_path / "src"
    shutil.copytree(tiny_llama, src)
    keys = [_key(src)]
    assert _key(src) == keys[0]  # the same content: the same key, wherever it lies
    shutil.copytree(src, tmp_path / "moved")
    assert _key(tmp_path / "moved") == keys[0]
    config = (src / "config.json").read_text()
    (src / "config.json").write_text(config.replace("{", '{"edgekit_test": 1, ', 1))
    keys.append(_key(src))
    (src / "tokenizer.json").write_text((src / "tokenizer.json").read_text() + " ")
    keys.append(_key(src))
    weights = next(src.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor: same size, same header
    weights.write_bytes(bytes(data))
    keys.append(_key(src))
    assert len(set(keys)) == 4, keys


@pytest.fixture
def entry(tmp_path, monkeypatch, tiny_llama):
    """A finished entry (tiny llama, GGUF q8_0) in an empty cache; ``entry.again()`` exports it again."""
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    key = "0" * 32

    def export():
        return cache.export(key, tiny_llama, "gguf", "q8_0", {}, "sha", None, Progress())

    first = export()
    assert first.status == "passed" and cache.lookup(key) == first
    return SimpleNamespace(first=first, key=key, again=export, art=cache.artifact_path(key, "gguf", "q8_0"))


def _flip_keeping_mtime(path) -> None:
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(st.st_size // 2)
        byte = fh.read(1)
        fh.seek(st.st_size // 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _truncate(path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def _damage(kind: str, e) -> None:
    model = next(e.art.glob("*.gguf"))
    if kind == "truncated model":
        _truncate(model)
    elif kind == "bit flip, same size and mtime":  # e.g. an in-place write through the hard link of an OUT
        _flip_keeping_mtime(model)
    elif kind == "entry.json not JSON":
        (e.art.parent / "entry.json").write_text('{"schema_version": 1, "key": "00')
    elif kind == "entry.json empty":
        (e.art.parent / "entry.json").write_text("")
    elif kind == "manifest not JSON":
        (e.art / "edgekit.json").write_text("garbage")
    elif kind == "artifact folder gone":
        shutil.rmtree(e.art)
    elif kind == "a file where the artifact folder was":
        shutil.rmtree(e.art)
        e.art.write_text("x")


@pytest.mark.parametrize("kind", [
    "truncated model", "bit flip, same size and mtime", "entry.json not JSON", "entry.json empty",
    "manifest not JSON", "artifact folder gone", "a file where the artifact folder was",
])
def test_a_damaged_entry_is_not_used_and_is_made_again(entry, kind):
    _damage(kind, entry)
    assert cache.lookup(entry.key) is None
    again = entry.again()  # what optimize does on a miss: no error about a folder it owns
    assert again.status == "passed" and again.created_at >= entry.first.created_at
    assert cache.lookup(entry.key) == again
    assert sorted(p.name for p in entry.art.parent.iterdir() if not p.name.startswith(".")) == [
        "entry.json", "gguf-q8_0"]
