"""Fixtures shared by the exporter tests: one tiny random model per architecture, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.exporters.gguf.models import make_tiny


@pytest.fixture(scope="session")
def tiny_arch(tmp_path_factory):
    """``tiny_arch("gemma3_text")`` -> the folder of that architecture's tiny model (tests.exporters.gguf.models)."""
    made: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in made:
            # llama.cpp gives models whose name contains "phi3" Phi-3's own special tokens (</s>), which the
            # tiny BPE vocabulary lacks: the folder name stays neutral.
            made[arch] = make_tiny(tmp_path_factory.mktemp("tiny") / f"arch-{arch.replace('phi3', 'p-three')}", arch)
        return made[arch]

    return build
