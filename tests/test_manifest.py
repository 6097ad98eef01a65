"""Manifest round-trip, validation, hash verification and atomic artifact writes (fast)."""

from __future__ import annotations

import json
import os

import pytest

from edgekit.errors import ArtifactError, ConfigError
from edgekit.fileio import staged_artifact
from edgekit.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    GateReport,
    Manifest,
    ModelInfo,
    Quantization,
    SourceInfo,
    list_files,
    read_manifest,
    verify_files,
    write_manifest,
)


def _manifest(folder) -> Manifest:
    return Manifest(
        format="onnx", task="text-generation", precision="fp32", quantization=Quantization(method="none"),
        model_file="model.onnx", model=ModelInfo(architecture="llama", n_layers=2, eos_token_ids=[2]),
        source=SourceInfo(kind="local", path="/x", weights_sha256="0" * 64), files=list_files(folder),
        versions={"edgekit": "0.1.0"},
        gate=GateReport(status="passed", kind="decoder", reference="t", metrics={"kl_mean": 1e-8}, thresholds={"kl_mean": 1e-4}),
        created_at="2026-01-01T00:00:00+00:00",
    )


@pytest.fixture
def artifact(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(os.urandom(4096))
    (folder / "tokenizer.json").write_text("{}")
    write_manifest(folder, _manifest(folder))
    return folder


def test_round_trip(artifact):
    m = read_manifest(artifact)
    assert m.schema_version == SCHEMA_VERSION
    assert [f.path for f in m.files] == ["model.onnx", "tokenizer.json"]
    assert m.file("model.onnx").size == 4096
    assert m == Manifest.model_validate(json.loads((artifact / MANIFEST_NAME).read_text()))
    verify_files(artifact, m)


def test_unknown_field_and_wrong_version_refused(artifact):
    path = artifact / MANIFEST_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(ArtifactError, match="surprise"):
        read_manifest(artifact)
    path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ArtifactError, match="schema_version 99"):
        read_manifest(artifact)
    path.write_text("{")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(artifact)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="no edgekit.json"):
        read_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        read_manifest(tmp_path / "nope")


def test_verify_catches_modified_and_truncated_files(artifact, monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    m = read_manifest(artifact)
    verify_files(artifact, m)  # records a stamp
    assert list((tmp_path / "cache" / "verified").iterdir())
    data = bytearray((artifact / "model.onnx").read_bytes())
    data[100] ^= 0xFF
    (artifact / "model.onnx").write_bytes(bytes(data))  # same size, new mtime: must be re-hashed
    with pytest.raises(ArtifactError, match="'model.onnx' does not match its sha256"):
        verify_files(artifact, m)
    (artifact / "model.onnx").write_bytes(bytes(data[:10]))
    with pytest.raises(ArtifactError, match="'model.onnx' is 10 bytes"):
        verify_files(artifact, m)
    (artifact / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="'model.onnx' .* is missing"):
        verify_files(artifact, m)


def test_staged_artifact_is_atomic(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_artifact(out, force=False) as stage:
            (stage / "model.onnx").write_text("half")
            raise RuntimeError("crash mid-export")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind
    with staged_artifact(out, force=False) as stage:
        (stage / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"


def test_staged_artifact_force_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (out / MANIFEST_NAME).write_text(json.dumps({"files": [{"path": "old.txt"}]}))  # an artifact: force may replace it
    with pytest.raises(ConfigError, match="already exists"):
        with staged_artifact(out, force=False):
            pass
    with pytest.raises(RuntimeError):
        with staged_artifact(out, force=True) as stage:
            (stage / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert (out / "old.txt").read_text() == "old"  # untouched by the failed attempt
    with staged_artifact(out, force=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["file-parent", "sysfs"])
def test_unwritable_destination(tmp_path, where):
    if where == "file-parent":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "out"
    else:
        out = "/sys/edgekit-test-out"
    with pytest.raises(ConfigError, match="cannot write"):
        with staged_artifact(out, force=False):
            pass
