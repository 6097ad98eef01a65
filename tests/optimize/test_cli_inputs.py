"""edgekit optimize refuses bad input in one line, exit 2, before any work: nothing written, nothing deleted.

Every case runs the real CLI in a fresh process with a cache and a device registry of its own; the source is
the tiny random decoder (made from a config, no download), so a case that got past its check would start
exporting into that cache, which each case checks is still empty.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import error_line, run_cli


def _tree(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture
def refuses(tmp_path, tiny_llama):
    """``refuses(*args, expect)``: optimize ARGS exits 2 with one error line holding ``expect``; OUT (tmp/out,
    unless ARGS name another -o) is not created, the cache gets nothing, the source is unchanged."""
    env = {"EDGEKIT_CACHE": str(tmp_path / "cache"), "EDGEKIT_CONFIG_DIR": str(tmp_path / "config")}
    source_before = _tree(tiny_llama)

    def check(*args, expect: str, source=None, out=True):
        extra = ["-o", tmp_path / "out"] if out else []
        proc = run_cli("optimize", source or tiny_llama, *args, *extra, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert expect in error_line(proc)
        assert not (tmp_path / "out").exists()
        assert not (tmp_path / "cache" / "optimize").exists()
        assert _tree(tiny_llama) == source_before
        return proc

    check.env, check.tmp = env, tmp_path
    return check


@pytest.mark.parametrize("args, expect", [
    (["--target", "nope"], "unknown target 'nope'"),
    (["--target", "pixel-8", "--quants", "q9"], "unknown quantization 'q9' in --quants"),
    (["--target", "pixel-8", "--quants", "all,q8_0"], "--quants names 'all' with other types"),
    (["--target", "pixel-8", "--formats", "tflite"], "unknown format 'tflite' in --formats"),
    (["--target", "pixel-8", "--formats", "onnx", "--quants", "q8_0"], "--formats leaves gguf out"),
    (["--target", "pixel-8", "--objective", "speed"], "Invalid value for '--objective'"),
    # the constraints: one message for 0, negative, NaN and infinity (inf would make the JSON report invalid)
    (["--target", "pixel-8", "--min-top1", "0"], "--min-top1 must be a finite number above 0 and at most 1, got 0.0"),
    (["--target", "pixel-8", "--min-top1", "1.5"], "--min-top1 must be a finite number above 0 and at most 1"),
    (["--target", "pixel-8", "--min-top1", "nan"], "--min-top1 must be a finite number above 0 and at most 1, got nan"),
    (["--target", "pixel-8", "--max-kl", "-0.1"], "--max-kl must be a finite number above 0, got -0.1"),
    (["--target", "pixel-8", "--max-size", "inf"], "--max-size must be a finite number above 0, got inf"),
    (["--target", "pixel-8", "--max-size", "0"], "--max-size must be a finite number above 0, got 0.0"),
    (["--target", "pixel-8", "--min-decode", "nan"], "--min-decode must be a finite number above 0, got nan"),
    (["--target", "pixel-8", "--device", "ghost"], "no device named 'ghost'"),
])
def test_bad_option(refuses, args, expect):
    refuses(*args, expect=expect)


def test_no_output_and_no_dry_run(refuses):
    refuses("--target", "pixel-8", expect="pass -o/--output OUT", out=False)


def test_out_is_a_file(refuses):
    (refuses.tmp / "file").write_text("mine")
    for force in ([], ["--force"]):
        refuses("--target", "pixel-8", "-o", refuses.tmp / "file", *force, expect="file", out=False)
    assert (refuses.tmp / "file").read_text() == "mine"


def test_out_inside_the_source(refuses, tiny_llama):
    refuses("--target", "pixel-8", "-o", tiny_llama / "ship", out=False,
            expect=f"is inside the source model folder {tiny_llama}: choose an -o/--output outside it")
    refuses("--target", "pixel-8", "-o", tiny_llama / "sub" / "ship", out=False, expect="is inside the source")


def test_source_not_a_decoder(refuses, tmp_path, tiny_bert):
    (tmp_path / "empty").mkdir()
    refuses("--target", "pixel-8", source=tmp_path / "empty", expect="not a Hugging Face model folder")
    refuses("--target", "pixel-8", source=tiny_bert, expect="optimize chooses between GGUF and ONNX decoders")
    refuses("--target", "pixel-8", source=tmp_path / "missing", expect="does not exist")


def test_device_not_set_up_is_refused_before_any_export(refuses):
    """A registered device without 'edgekit devices setup' could not run anything: said now, not after exports."""
    proc = run_cli("devices", "add", "pi", "ssh://me@pi.invalid", env=refuses.env)
    assert proc.returncode == 0, proc.stderr
    refuses("--target", "pixel-8", "--device", "pi", expect="device pi is not set up: run 'edgekit devices setup pi'")
    assert os.listdir(refuses.tmp / "config") == ["devices.toml"]


def test_help_gives_every_option_its_default_and_the_constraints_their_units():
    import typer

    from edgekit.cli import _register, app

    _register()
    cmd = typer.main.get_command(app).commands["optimize"]
    for p in cmd.params:
        if p.name in ("help",) or getattr(p, "is_flag", False) and not getattr(p, "secondary_opts", None):
            continue  # plain on/off flags: off unless given
        text = (p.help or "").lower()
        shown = p.show_default is not False and p.default not in (None, [], ())
        assert p.required or shown or "default" in text or "required unless" in text, f"{p.opts}: no default"
    helps = {p.name: p.help for p in cmd.params}
    assert "0 < X <= 1" in helps["min_top1"] and "nats" in helps["max_kl"]
    assert "10^6 bytes" in helps["max_size"] and "tokens/s" in helps["min_decode"]
