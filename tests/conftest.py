"""Shared fixtures: the packaged real models, their exported artifacts, tiny random models, the CLI.

Artifacts of the real models are exported once per test session (lazily, on first
use) and shared by every test that needs them. A missing packaged model is a
setup failure (an error), never a skip.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.builders import make_tiny_bert, make_tiny_decoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Each test run gets its own cache folder (calibrations, verified-hash stamps, the SmolLM2 folder), set
# before anything reads it: a test never reads or writes the user's ~/.cache/edgekit, and one run's
# leftovers never decide another's result. CLI subprocesses inherit it through the environment.
TEST_CACHE = Path(tempfile.mkdtemp(prefix="edgekit-test-cache-"))
os.environ["EDGEKIT_CACHE"] = str(TEST_CACHE)
atexit.register(shutil.rmtree, TEST_CACHE, ignore_errors=True)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from edgekit.packaged import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from edgekit.packaged import smollm2_gguf_path

    return smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2_hf() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (built from the packaged GGUF, cached)."""
    from edgekit.packaged import smollm2_hf_folder

    return smollm2_hf_folder()


class ArtifactStore:
    """Exports each named artifact of the packaged models once per session."""

    RECIPES = {  # name: (packaged model, quant, export path)
        "minilm-fp32": ("minilm", "none", "auto"),
        "minilm-int8": ("minilm", "int8", "auto"),
        "smollm2-fp32": ("smollm2", "none", "optimum"),
        "smollm2-int8": ("smollm2", "int8", "optimum"),
        "smollm2-int4": ("smollm2", "int4", "optimum"),
        "smollm2-fused-fp32": ("smollm2", "none", "fused"),  # export_onnx's default path for llama decoders
        "smollm2-fused-int4": ("smollm2", "int4", "fused"),
    }

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, object] = {}

    def __call__(self, name: str):
        if name not in self.done:
            from edgekit.exporters.onnx import export_onnx
            from edgekit.packaged import resolve

            model, quant, via = self.RECIPES[name]
            self.done[name] = export_onnx(resolve(model), self.root / name, quant=quant, via=via)
        return self.done[name]


@pytest.fixture(scope="session")
def onnx_artifact(tmp_path_factory) -> ArtifactStore:
    """``onnx_artifact("smollm2-fp32")`` -> the exported :class:`edgekit.exporters.onnx.Artifact`."""
    return ArtifactStore(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return make_tiny_decoder(tmp_path_factory.mktemp("tiny") / "qwen2", "qwen2")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


# ---- tiny ONNX artifacts (seconds to build), shared by the runtime and package tests: read only, damage on copies ----
@pytest.fixture(scope="session")
def tiny_onnx(tiny_llama, tmp_path_factory):
    from edgekit.exporters.onnx import export_onnx

    return export_onnx(tiny_llama, tmp_path_factory.mktemp("tiny-art") / "tiny-onnx")


@pytest.fixture(scope="session")
def tiny_encoder(tiny_bert, tmp_path_factory):
    from edgekit.exporters.onnx import export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("tiny-art") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_bert_classifier(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert-cls", classifier=True)


def run_cli(*args: str, timeout: float = 600, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m edgekit ARGS`` in a fresh process; return the completed process (text mode)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env=full_env, cwd=ROOT, input=input,
    )


@pytest.fixture
def cli():
    return run_cli


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one error line a failed command printed on stderr (asserts there is exactly one)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgekit: error:")]
    assert len(errors) == 1, f"expected one error line, got stderr:\n{proc.stderr}"
    return errors[0]


@pytest.fixture
def profile_toml(tmp_path):
    """``profile_toml(drop=(), **overrides)`` -> path of a copy of the raspberry-pi-5 preset, edited."""
    from edgekit import tomlio
    from edgekit.targets.profile import preset_dir

    def make(drop=(), name="my-device", **overrides) -> Path:
        text = (preset_dir() / "raspberry-pi-5.toml").read_text()
        data = tomlio.loads(text, "preset")
        data["name"] = name
        for key in drop:
            data.pop(key)
        data.update(overrides)
        path = tmp_path / f"{name}.toml"
        path.write_text(tomlio.dumps(data))
        return path

    return make
