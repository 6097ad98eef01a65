"""Atomic writes, the cache folder, hashing and verified-hash stamps (fast)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from edgekit.fileio import (
    VerifiedStamps,
    atomic_path,
    cache_dir,
    read_json_dict,
    replace_folder,
    sha256_file,
    sha256_files,
    write_json_atomic,
    write_text_atomic,
)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEKIT_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "edgekit")


def test_atomic_writes_replace_whole_and_leave_nothing_behind(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    write_text_atomic(path, "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"
    write_text_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "chart.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(path, suffix=".png") as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != path
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["chart.png"]


def test_replace_folder_swaps_in_the_new_one(tmp_path):
    dest, src = tmp_path / "out", tmp_path / "stage"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    src.mkdir()
    (src / "new.txt").write_text("new")
    replace_folder(src, dest)
    assert [p.name for p in dest.iterdir()] == ["new.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]
    other = tmp_path / "other"
    other.mkdir()
    replace_folder(other, tmp_path / "fresh")
    assert (tmp_path / "fresh").is_dir() and not other.exists()


def test_hashes(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"y")
    assert sha256_file(a) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
    assert sha256_file(a, chunk=7) == sha256_file(a)
    assert sha256_files([a, b]) != sha256_files([b, a])  # order and names count
    c = tmp_path / "c.bin"
    c.write_bytes(b"y")
    assert sha256_files([a, b]) != sha256_files([a, c])


def test_read_json_dict_is_empty_for_anything_but_an_object(tmp_path):
    p = tmp_path / "x.json"
    assert read_json_dict(p) == {}
    p.write_text("[1, 2]")
    assert read_json_dict(p) == {}
    p.write_text("{bad")
    assert read_json_dict(p) == {}
    p.write_text('{"a": 1}')
    assert read_json_dict(p) == {"a": 1}


def test_verified_stamps_are_kept_per_folder_and_saved_only_when_changed(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "art"
    folder.mkdir()
    f = folder / "m.bin"
    f.write_bytes(b"data")
    stamps = VerifiedStamps(folder)
    stamp = stamps.stamp("abc", f.stat())
    assert not stamps.is_known("m.bin", stamp)
    stamps.record("m.bin", stamp)
    stamps.save()
    assert stamps.path.parent == tmp_path / "cache" / "verified"
    again = VerifiedStamps(folder)
    assert again.is_known("m.bin", stamp) and not again.is_known("m.bin", again.stamp("other-hash", f.stat()))
    mtime = stamps.path.stat().st_mtime_ns
    again.record("m.bin", stamp)
    os.utime(stamps.path, ns=(mtime - 10**9, mtime - 10**9))
    again.save()  # unchanged: not rewritten
    assert stamps.path.stat().st_mtime_ns == mtime - 10**9
    assert VerifiedStamps(tmp_path / "elsewhere").path != stamps.path
