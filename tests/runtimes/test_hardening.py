"""Never answer silently wrong, never take the machine down: damaged models and absurd settings.

Each damaged file is real: a GGUF or ONNX model with a NaN or inf written into a weight,
a verified artifact with one byte flipped on disk behind the size and mtime. Every case
must end in one clear edgekit error naming the file, never in text made of NaN.
"""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pytest

import edgekit
from edgekit.errors import ArtifactError, ConfigError
from edgekit.runtimes.threads import MAX_THREADS, OVERSUBSCRIBE, available_cpus, check_threads
from tests.conftest import error_line
from tests.runtimes.corrupt import flip_byte_keep_mtime, gguf_artifact, poison_gguf, poison_onnx

CPUS = available_cpus()
LIMIT = min(OVERSUBSCRIBE * CPUS, MAX_THREADS)


def bare_copy(art, tmp_path, name="model.gguf"):
    """A copy of the artifact's (or the path's) model file, on its own: a bare file."""
    dst = tmp_path / name
    shutil.copyfile(getattr(art, "model_path", art), dst)
    return dst


# ---- non-finite model output is an ArtifactError naming the file (the blame at load too) -------------------------------------
@pytest.mark.parametrize("tensor", ["output_norm.weight", "blk.0.attn_norm.weight", "blk.1.ffn_norm.weight"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_gguf_with_a_broken_norm_weight_raises_naming_the_file(tiny_gguf, tmp_path, tensor, value):
    bad = poison_gguf(bare_copy(tiny_gguf, tmp_path), tensor, value)
    model = edgekit.load(bad, threads=1)
    with pytest.raises(ArtifactError) as info:
        model.generate("The capital of France is", max_tokens=8)
    assert str(bad) in str(info.value) and "corrupt" in str(info.value)
    stream = model.stream("hello", max_tokens=4)
    with pytest.raises(ArtifactError, match="corrupt"):
        next(stream)  # the first event already: no empty answer, no text made of NaN
    model.close()


def test_the_issue_example_smollm2_with_a_nan_in_a_norm_weight(smollm2_gguf, tmp_path):
    bad = poison_gguf(bare_copy(smollm2_gguf, tmp_path), "blk.0.attn_norm.weight")
    model = edgekit.load(bad, threads=1)
    with pytest.raises(ArtifactError, match="corrupt") as info:
        model.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    assert str(bad) in str(info.value)  # was: an empty answer, exit 0
    model.close()


def test_the_healthy_copy_still_generates(tiny_gguf, tmp_path):
    model = edgekit.load(bare_copy(tiny_gguf, tmp_path), threads=1)
    res = model.generate("The capital of France is", max_tokens=6, ignore_eos=True)
    assert len(res.token_ids) == 6 and all(0 < p <= 1 for p in res.probs)
    assert all(math.isfinite(e) for e in res.entropies)


def test_cli_run_on_a_nan_gguf_exits_2_with_one_line(cli, tiny_gguf, tmp_path):
    """A damaged file found while generating: exit 2 (re-export it), as when it is found at load."""
    bad = poison_gguf(bare_copy(tiny_gguf, tmp_path), "output_norm.weight")
    proc = cli("run", bad, "-p", "The capital of France is", "-n", "8", "--threads", "1")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)
    assert str(bad) in line and "corrupt" in line
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()


def test_an_onnx_decoder_with_a_nan_weight_raises_naming_the_file(tiny_onnx, tmp_path):
    bad = poison_onnx(tiny_onnx.path, tmp_path / "bad", "norm")
    model = edgekit.load(bad)
    with pytest.raises(ArtifactError) as info:
        model.generate("The capital of France is", max_tokens=4)
    assert str(bad) in str(info.value) and "corrupt" in str(info.value)


def test_an_encoder_with_a_nan_weight_raises_instead_of_nan_embeddings(tiny_encoder, tmp_path):
    bad = poison_onnx(tiny_encoder.path, tmp_path / "bad", "LayerNorm")
    with pytest.raises(ArtifactError, match="embeddings contain NaN or inf") as info:
        edgekit.load(bad).embed(["small models", "on phones"])
    assert str(bad) in str(info.value)
    good = edgekit.load(tiny_encoder.path).embed(["small models"])
    assert np.isfinite(good).all()


def test_a_classifier_with_a_nan_weight_raises_instead_of_nan_scores(tiny_classifier, tmp_path):
    bad = poison_onnx(tiny_classifier.path, tmp_path / "bad", "LayerNorm")
    with pytest.raises(ArtifactError, match="logits contain NaN or inf"):
        edgekit.load(bad).classify(["great", "awful"])


def test_masked_minus_inf_logits_are_not_corruption():
    from edgekit.runtimes.sampling import confidence, distribution

    logits = np.array([2.0, -np.inf, 1.0, -np.inf], np.float32)  # masked tokens: probability 0, fine
    e, z, entropy = distribution(logits)
    assert math.isfinite(z) and math.isfinite(entropy) and entropy > 0
    assert confidence(logits, 1)[0] == 0.0
    for broken in ([0.0, np.nan], [0.0, np.inf], [-np.inf, -np.inf]):
        assert math.isnan(distribution(np.array(broken, np.float32))[1])


# ---- a bare file is unverified, and says so once ------------------------------------------------------
def test_a_bare_file_warns_once_per_file_per_process(tiny_gguf, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edgekit")
    first, second = bare_copy(tiny_gguf, tmp_path, "a.gguf"), bare_copy(tiny_gguf, tmp_path, "b.gguf")
    for path in (first, first, second, first):
        edgekit.load(path, threads=1).close()
    said = [r.getMessage() for r in caplog.records if "unverified" in r.getMessage()]
    assert len(said) == 2 and str(first) in said[0] and str(second) in said[1]
    assert "no edgekit.json manifest" in said[0]
    caplog.clear()
    edgekit.load(tiny_gguf.path, threads=1).close()  # an artifact folder is verified: nothing to say
    assert not [r for r in caplog.records if "unverified" in r.getMessage()]


def test_cli_shows_the_unverified_warning_as_one_line(cli, tiny_gguf, tmp_path):
    bare = bare_copy(tiny_gguf, tmp_path)
    proc = cli("run", bare, "-p", "hello", "-n", "2", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "unverified" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(bare) in lines[0]
    proc = cli("run", tiny_gguf.path, "-p", "hello", "-n", "2", "--threads", "1")
    assert proc.returncode == 0 and "unverified" not in proc.stderr


# ---- damage behind an unchanged size and mtime is caught on the next load ---------------------------
def test_a_byte_flipped_behind_the_mtime_is_refused_on_the_next_load(smollm2_gguf, tmp_path):
    art = gguf_artifact(smollm2_gguf, tmp_path / "smol")
    edgekit.load(art, threads=1).close()  # first load: sha256 of every file, stamp recorded
    edgekit.load(art, threads=1).close()  # second: the stamp's fast digest, and it matches
    size = (art / "model.gguf").stat().st_size
    flip_byte_keep_mtime(art / "model.gguf", size // 2)  # inside the tensors
    with pytest.raises(ArtifactError) as info:
        edgekit.load(art, threads=1)
    assert "'model.gguf'" in str(info.value) and str(art) in str(info.value)
    assert "changed on disk since it was verified" in str(info.value)
    with pytest.raises(ArtifactError, match="'model.gguf'"):
        edgekit.load(art, threads=1)  # and on every load after, not only the next one


def test_small_files_are_checked_too_and_old_stamps_are_upgraded(tiny_onnx, tmp_path):
    from edgekit.fileio import VerifiedStamps, crc32_file
    from edgekit.manifest import read_manifest, verify_files

    art = tmp_path / "art"
    shutil.copytree(tiny_onnx.path, art)
    manifest = read_manifest(art)
    verify_files(art, manifest)
    stamps = VerifiedStamps(art)
    assert stamps.fast_digest("config.json") == crc32_file(art / "config.json")
    # a stamp written before fast digests existed: verified again in full, then upgraded
    old = {rel: stamp[:4] for rel, stamp in stamps.known.items()}
    stamps.path.write_text(json.dumps(old))
    verify_files(art, manifest)
    assert all(len(s) == 5 for s in VerifiedStamps(art).known.values())
    flip_byte_keep_mtime(art / "config.json", 3)
    with pytest.raises(ArtifactError, match="'config.json' changed on disk"):
        edgekit.load(art)
    with pytest.raises(ArtifactError, match="'config.json' does not match its sha256"):
        verify_files(art, manifest, use_stamps=False)  # edgekit inspect: the full check names it too


# ---- threads: bounded by what the machine has ----------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_threads_that_are_not_a_count_are_refused(bad, tiny_onnx):
    with pytest.raises(ConfigError, match="threads must be an integer >= 1"):
        edgekit.load(tiny_onnx.path, threads=bad)


@pytest.mark.parametrize("count", [LIMIT + 1, 4096, 100_000])
def test_absurd_thread_counts_are_refused_before_any_backend_sees_them(count, tiny_gguf, tiny_onnx):
    for path in (tiny_gguf.path, tiny_onnx.path):
        with pytest.raises(ConfigError) as info:
            edgekit.load(path, threads=count)
        assert str(count) in str(info.value) and f"at most {LIMIT}" in str(info.value)
        assert info.value.params == ("threads",)


def test_more_threads_than_cpus_warns_and_still_loads(tiny_gguf, caplog):
    caplog.set_level(logging.WARNING, logger="edgekit")
    model = edgekit.load(tiny_gguf.path, threads=CPUS + 1)
    assert model.generate("hi", max_tokens=2, ignore_eos=True).token_ids
    model.close()
    said = [r.getMessage() for r in caplog.records if "CPU(s) available" in r.getMessage()]
    assert len(said) == 1 and f"threads {CPUS + 1}" in said[0]
    caplog.clear()
    assert check_threads(CPUS) == CPUS and check_threads(None) is None
    assert not caplog.records  # up to the CPUs: nothing to say


def test_the_cli_and_the_profiler_share_the_bound(cli, tiny_gguf):
    from edgekit.profiler.bench import bench

    proc = cli("run", tiny_gguf.path, "-p", "hi", "-n", "2", "--threads", "100000")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "--threads 100000 is more than this machine can use" in line
    with pytest.raises(ConfigError, match="threads 4096"):
        bench([tiny_gguf.path], threads=4096, runs=1, warmup=0, calibrate_host=False)
