"""Damaged model files for the hardening tests: real files with one thing broken, as users meet them.

* :func:`poison_gguf` writes a value (NaN, inf) into a float tensor of a GGUF file in place,
  through gguf-py's ``GGUFReader`` on a writable memmap: llama.cpp loads the file as usual and
  computes NaN from then on.
* :func:`poison_onnx` does the same to an initializer of an ONNX model.
* :func:`flip_byte_keep_mtime` flips one byte in place and puts the modification time back:
  what bit rot or an in-place write that restores the mtime leaves behind.
* :func:`gguf_artifact` wraps a GGUF file in an artifact folder with a manifest (hashes and all).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np


def poison_gguf(path: Path, tensor: str, value: float = float("nan")) -> Path:
    """Write ``value`` into the first element of the F32 ``tensor`` of the GGUF file ``path`` (in place)."""
    import gguf

    reader = gguf.GGUFReader(str(path), "r+")
    for t in reader.tensors:
        if t.name == tensor:
            assert t.data.dtype == np.float32, f"{tensor} is {t.tensor_type.name}, not F32"
            t.data.reshape(-1)[0] = value
            reader.data.flush()
            return path
    raise KeyError(f"{path} has no tensor {tensor}")


def poison_onnx(folder: Path, out: Path, match: str, value: float = float("nan")) -> Path:
    """A bare copy of the artifact ``folder`` (no manifest) whose first float initializer with ``match``
    in its name has ``value`` in its first element. Returns the copied model.onnx."""
    import onnx
    from onnx import numpy_helper

    shutil.copytree(folder, out, ignore=shutil.ignore_patterns("edgekit.json"))
    model = onnx.load(str(out / "model.onnx"))
    for init in model.graph.initializer:
        if match in init.name and init.data_type == onnx.TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).copy()
            arr.reshape(-1)[0] = value
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            onnx.save(model, str(out / "model.onnx"))
            return out / "model.onnx"
    raise KeyError(f"no float initializer matching {match!r} in {folder}")


def flip_byte_keep_mtime(path: Path, offset: int) -> None:
    """Flip the bits of one byte of ``path`` in place, then restore its access and modification times."""
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def gguf_artifact(gguf_file: Path, folder: Path) -> Path:
    """An artifact folder holding a copy of ``gguf_file`` as model.gguf, with a manifest of its hashes."""
    from edgekit.manifest import (
        GateReport,
        Manifest,
        ModelInfo,
        Quantization,
        SourceInfo,
        list_files,
        now_iso,
        write_manifest,
    )

    folder.mkdir(parents=True)
    shutil.copyfile(gguf_file, folder / "model.gguf")
    manifest = Manifest(
        format="gguf", task="text-generation", precision="q4_1", quantization=Quantization(method="llama.cpp"),
        model_file="model.gguf", model=ModelInfo(architecture="llama"),
        source=SourceInfo(kind="local", path=str(gguf_file), weights_sha256=""), files=list_files(folder),
        versions={}, gate=GateReport(status="skipped", kind="decoder", reference="none"), created_at=now_iso(),
    )
    write_manifest(folder, manifest)
    return folder
