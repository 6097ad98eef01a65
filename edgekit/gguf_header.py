"""GGUF headers read without gguf-py or llama.cpp: metadata, tensor infos, and the vocabulary check.

gguf-py's ``GGUFReader`` maps every tensor and every item of every metadata array into numpy
objects when it opens a file: 1.7 s for the packaged 98 MB SmolLM2 (49,152 tokens, 48,900
merges), more than llama.cpp takes to load it (0.2 s). :func:`read_gguf_header` walks the header
bytes instead, checks every length and count against the file's size (a damaged header is an
:class:`ArtifactError`, never a huge allocation), and reads only the string arrays it is asked for.

:func:`check_gguf_vocab` refuses a vocabulary llama.cpp cannot load *before* it sees the file:
llama.cpp maps each token's bytes to its id and asserts the map has one entry per token
(``GGML_ASSERT(id_to_token.size() == token_to_id.size())``), so a GGUF whose
``tokenizer.ggml.tokens`` holds the same token twice aborts the whole process (SIGABRT) instead
of raising an error.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Collection

from edgekit.errors import ArtifactError

TOKENS_KEY = "tokenizer.ggml.tokens"

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_NEWEST = 3  # llama.cpp refuses GGUF versions newer than the one it writes
_GGML_MAX_DIMS = 4
_MAX_NESTING = 8  # arrays of arrays: gguf-py writes one level; deeper is damage, not data
_U64 = struct.Struct("<Q")

Header = tuple[dict[str, object], list[tuple[str, list[int], int]]]


class _Walker:
    """A position in the mapped header; every read is checked against the bytes left."""

    def __init__(self, buf):
        self.buf, self.pos, self.size = buf, 0, len(buf)

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise ValueError(f"{what} at byte {self.pos} runs past the end of the file ({self.size} bytes)")

    def take(self, fmt: str):
        n = struct.calcsize(fmt)
        self.need(n, "a value")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.take("<Q")
        self.need(n, f"a string of {n} bytes")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8", "replace")

    def strings(self, count: int, keep: bool) -> list[bytes] | None:
        """``count`` strings: their raw bytes when ``keep``, else skipped (one tight loop, no decoding)."""
        self.need(count * 8, f"an array of {count} strings")
        buf, size, pos, unpack = self.buf, self.size, self.pos, _U64.unpack_from
        out: list[bytes] | None = [] if keep else None
        for _ in range(count):
            if pos + 8 > size:
                raise ValueError(f"a string length at byte {pos} runs past the end of the file ({size} bytes)")
            (n,) = unpack(buf, pos)
            pos += 8
            if n > size - pos:
                raise ValueError(f"a string of {n} bytes at byte {pos} runs past the end of the file ({size} bytes)")
            if out is not None:
                out.append(buf[pos:pos + n])
            pos += n
        self.pos = pos
        return out

    def value(self, vtype: int, depth: int = 0, keep: bool = False):
        """A scalar or string; arrays are skipped (None), except an array of strings with ``keep``."""
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item, count = self.take("<I"), self.take("<Q")
            if depth >= _MAX_NESTING:
                raise ValueError(f"arrays nested deeper than {_MAX_NESTING} levels")
            if item in _SCALAR:
                self.need(count * struct.calcsize(_SCALAR[item]), f"an array of {count} items")
                self.pos += count * struct.calcsize(_SCALAR[item])
            elif item == _STRING:
                return self.strings(count, keep)
            else:
                self.need(count * 12, f"an array of {count} items")  # the smallest array item: a type and a count
                for _ in range(count):
                    self.value(item, depth + 1)
            return None
        if vtype not in _SCALAR:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self.take(_SCALAR[vtype])

    def header(self, arrays: Collection[str], tensors: bool) -> Header:
        meta: dict[str, object] = {}
        infos = []
        if bytes(self.buf[:4]) != b"GGUF":
            raise ValueError("bad magic")
        self.pos = 4
        version, n_tensors, n_kv = self.take("<I"), self.take("<Q"), self.take("<Q")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        if version > _NEWEST:
            raise ValueError(f"GGUF version {version} is newer than this reader knows ({_NEWEST})")
        self.need(n_kv * 12 + n_tensors * 24, f"{n_kv} metadata entries and {n_tensors} tensor infos")  # their minimum
        for _ in range(n_kv):
            key = self.string()
            meta[key] = self.value(self.take("<I"), keep=key in arrays)
        for _ in range(n_tensors if tensors else 0):
            name = self.string()
            n_dims = self.take("<I")
            if n_dims > _GGML_MAX_DIMS:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions (ggml has at most {_GGML_MAX_DIMS})")
            dims = [self.take("<Q") for _ in range(n_dims)]
            gtype = self.take("<I")
            self.take("<Q")  # offset
            infos.append((name, dims, gtype))
        return meta, infos


def read_gguf_header(path: str | os.PathLike, *, arrays: Collection[str] = (), tensors: bool = True) -> Header:
    """Scalar metadata and tensor infos (name, dims, ggml type) of a GGUF file, read from its header only.

    Metadata arrays read as None, except the arrays of strings named in ``arrays``: lists of their
    items' raw bytes (llama.cpp compares tokens as bytes). ``tensors=False`` stops after the metadata
    (no tensor infos). Anything that is not a readable GGUF header is an :class:`ArtifactError`.
    """
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from exc
    with fh:
        try:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:  # an empty file: ValueError
                return _Walker(buf).header(frozenset(arrays), tensors)
        except (ValueError, OSError, struct.error) as exc:
            raise ArtifactError(f"{path} is not a readable GGUF file ({exc}): re-export it") from exc


def duplicate_tokens(tokens: list[bytes]) -> list[tuple[bytes, int, int]]:
    """(token, first id, later id) for each token whose bytes an earlier token already has, as llama.cpp
    sees them: it names an empty token ``[EMPTY_<id>]``, which can itself collide."""
    if b"" not in tokens and len(set(tokens)) == len(tokens):  # the common case, at C speed
        return []
    first: dict[bytes, int] = {}
    dups = []
    for i, token in enumerate(tokens):
        token = token or b"[EMPTY_%d]" % i
        j = first.setdefault(token, i)
        if j != i:
            dups.append((token, j, i))
    return dups


def check_gguf_vocab(path: str | os.PathLike) -> None:
    """Raise :class:`ArtifactError` when llama.cpp would abort on the file's vocabulary (duplicate tokens).

    Reads the metadata only (about 25 ms for the packaged SmolLM2's 49,152 tokens). Judges nothing
    else: a file without ``tokenizer.ggml.tokens``, or whose header cannot be read, is left to the
    loader, which reports damage itself (the magic check, then llama.cpp's parser, which raises).
    """
    try:
        meta, _ = read_gguf_header(path, arrays=(TOKENS_KEY,), tensors=False)
    except ArtifactError:
        return
    tokens = meta.get(TOKENS_KEY)
    dups = duplicate_tokens(tokens) if isinstance(tokens, list) else []
    if dups:
        token, j, i = dups[0]
        more = f" and {len(dups) - 1} more" if len(dups) > 1 else ""
        raise ArtifactError(
            f"{path} has duplicate tokens in its vocabulary ({TOKENS_KEY}: {token.decode('utf-8', 'replace')!r} "
            f"is token {j} and token {i}{more}) and would crash llama.cpp: convert the model again from a tokenizer "
            "whose tokens are all distinct (edgekit export gguf SOURCE -o OUT)"
        )


__all__ = ["read_gguf_header", "check_gguf_vocab", "duplicate_tokens", "TOKENS_KEY"]


def meta_count(meta: dict[str, object], arch: str, key: str) -> int | None:
    """``{arch}.{key}`` as a positive integer (a float that is one counts), else None: unknown."""
    v = meta.get(f"{arch}.{key}")
    ok = isinstance(v, int) or (isinstance(v, float) and v == v and abs(v) != float("inf"))
    return int(v) if ok and not isinstance(v, bool) and v >= 1 else None


def kv_bytes_per_position(meta: dict[str, object], kv_elem: int = 2) -> int | None:
    """Bytes of KV cache one position takes in llama.cpp (an f16 cache: ``kv_elem`` 2), from the header's
    metadata; None when the header does not say (per-layer head counts, a missing key)."""
    arch = str(meta.get("general.architecture") or "llama")
    if any(f"{arch}.attention.{k}" in meta and meta[f"{arch}.attention.{k}"] is None for k in ("head_count", "head_count_kv")):
        return None  # per layer (an array, read as None): the simple product would be wrong
    layers, heads = meta_count(meta, arch, "block_count"), meta_count(meta, arch, "attention.head_count")
    kv_heads = meta_count(meta, arch, "attention.head_count_kv") or heads
    hidden = meta_count(meta, arch, "embedding_length")
    k_len = meta_count(meta, arch, "attention.key_length") or (hidden // heads if hidden and heads else None)
    v_len = meta_count(meta, arch, "attention.value_length") or k_len
    if not (layers and kv_heads and k_len and v_len):
        return None
    return layers * kv_heads * (k_len + v_len) * kv_elem
