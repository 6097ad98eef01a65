"""Bad inputs to 'edgekit package': one clear line, exit 2, nothing at OUT (tiny artifacts, seconds)."""

from __future__ import annotations

import pytest

from tests.conftest import error_line


def _refused(proc, out, *words):
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    for w in words:
        assert w in line, line
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no staging folder left beside it
    return line


def test_not_an_artifact(cli, tmp_path):
    folder = tmp_path / "just-a-folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    out = tmp_path / "pkg"
    _refused(cli("package", folder, "-o", out), out, "not an edgekit artifact")
    _refused(cli("package", tmp_path / "missing", "-o", out), out, "does not exist")


def test_bare_model_file(cli, tiny_onnx_artifact, tmp_path):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_onnx_artifact.path / "model.onnx", "-o", out), out, "bare model file")


def test_unknown_platform(cli, tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_gguf_artifact.path, "-o", out, "--platform", "windows"), out, "--platform", "windows")


@pytest.mark.parametrize("args, words", [
    (["--context", "64"], ["--context", "encoder"]),
    (["--no-mmap"], ["--mmap", "GGUF"]),
    (["--ep", "coreml", "--platform", "android"], ["--ep coreml", "ios"]),
    (["--ep", "nnapi", "--platform", "ios"], ["--ep nnapi", "android"]),
])
def test_encoder_with_options_that_do_not_apply(cli, tiny_encoder_artifact, tmp_path, args, words):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_encoder_artifact.path, "-o", out, *args), out, *words)


def test_gguf_with_an_execution_provider(cli, tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_gguf_artifact.path, "-o", out, "--ep", "xnnpack"), out, "--ep", "ONNX")


def test_target_of_another_platform(cli, tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_gguf_artifact.path, "-o", out, "--target", "iphone-15-pro", "--platform", "android"),
             out, "iphone-15-pro", "ios")
    _refused(cli("package", tiny_gguf_artifact.path, "-o", out, "--target", "no-such-phone"), out, "unknown target")


def test_too_small_target(cli, tiny_onnx_artifact, target_file, tmp_path):
    out = tmp_path / "pkg"
    line = _refused(cli("package", tiny_onnx_artifact.path, "-o", out, "--target", target_file(0.00001)), out,
                    "does not fit", "weights", "KV cache", "KB")
    assert "test-phone" in line


def test_context_longer_than_trained(cli, tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    _refused(cli("package", tiny_gguf_artifact.path, "-o", out, "--context", "100000"), out, "--context", "256")


def test_out_is_the_artifact_or_exists(cli, tiny_gguf_artifact, tmp_path):
    line = error_line(cli("package", tiny_gguf_artifact.path, "-o", tiny_gguf_artifact.path, "--force"))
    assert "artifact itself" in line
    assert (tiny_gguf_artifact.path / "edgekit.json").is_file()  # untouched
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    proc = cli("package", tiny_gguf_artifact.path, "-o", out)
    assert proc.returncode == 2 and "already exists" in error_line(proc)
    assert (out / "mine.txt").read_text() == "keep"


def test_cli_writes_a_package_and_prints_the_size_report(cli, tiny_gguf_artifact, tmp_path):
    out = tmp_path / "pkg"
    proc = cli("package", tiny_gguf_artifact.path, "-o", out, "--platform", "android", "--target", "pixel-8")
    assert proc.returncode == 0, proc.stderr
    assert "size report" in proc.stdout and "model" in proc.stdout and (out / "package.json").is_file()
