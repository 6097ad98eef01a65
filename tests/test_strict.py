"""One strict base and one versioned loader for every schema'd file edgekit reads (fast)."""

from __future__ import annotations

import json

import pytest
from pydantic import Field

from edgekit.errors import ArtifactError, ConfigError
from edgekit.strict import StrictModel, current_version, load_versioned


class Inner(StrictModel):
    n: int = Field(ge=1)


class Doc(StrictModel):
    schema_version: int = 3
    name: str
    inner: Inner = Field(default_factory=lambda: Inner(n=1))
    model_kind: str = "x"  # a field starting with "model_" is allowed


def test_valid_data_loads_and_a_missing_version_means_the_current_one():
    doc = load_versioned(Doc, {"schema_version": 3, "name": "a", "inner": {"n": 2}}, where="doc.json")
    assert doc.name == "a" and doc.inner.n == 2 and current_version(Doc) == 3
    assert load_versioned(Doc, {"name": "b"}, where="doc.json").schema_version == 3


def test_a_newer_version_asks_to_upgrade_edgekit():
    with pytest.raises(ArtifactError) as info:
        load_versioned(Doc, {"schema_version": 4, "name": "a"}, where="doc.json", error=ArtifactError, hint="re-export")
    msg = str(info.value)
    assert msg.startswith("doc.json has schema_version 4, newer than this edgekit reads (3)")
    assert "upgrade edgekit" in msg and "re-export" not in msg and "\n" not in msg


@pytest.mark.parametrize("version", [2, "3", None, 3.5])
def test_an_older_or_odd_version_names_both_versions_and_the_hint(version):
    with pytest.raises(ConfigError, match=r"^doc.json has schema_version .*; this edgekit reads version 3: fix it$"):
        load_versioned(Doc, {"schema_version": version, "name": "a"}, where="doc.json", hint="fix it")


def test_a_required_version_must_be_present():
    with pytest.raises(ConfigError, match="schema_version None; this edgekit reads version 3"):
        load_versioned(Doc, {"name": "a"}, where="doc.json", version_required=True)
    with pytest.raises(ConfigError, match="schema_version None"):
        load_versioned(Doc, ["not", "a", "table"], where="doc.json")


def test_extra_keys_are_refused_at_every_level_with_the_documented_error_type():
    with pytest.raises(ArtifactError, match=r"^doc.json: unknown field 'surprise'; re-export$"):
        load_versioned(Doc, {"name": "a", "surprise": 1}, where="doc.json", error=ArtifactError, hint="re-export")
    with pytest.raises(ConfigError, match=r"^doc.json: unknown field 'inner.m'$"):
        load_versioned(Doc, {"name": "a", "inner": {"n": 1, "m": 2}}, where="doc.json")
    with pytest.raises(ConfigError, match=r"field 'inner.n' is invalid"):
        load_versioned(Doc, {"name": "a", "inner": {"n": 0}}, where="doc.json")
    with pytest.raises(ConfigError, match=r"field 'name' is missing"):
        load_versioned(Doc, {}, where="doc.json")


def test_every_schemad_file_uses_the_one_base():
    from edgekit.manifest import Manifest
    from edgekit.profiler.roofline import Calibration, Prediction
    from edgekit.profiler.schema import BenchReport
    from edgekit.profiler.shape import ModelShape
    from edgekit.router.config import EdgekitConfig
    from edgekit.targets.profile import TargetProfile

    for cls in (Manifest, TargetProfile, EdgekitConfig, Calibration, Prediction, BenchReport, ModelShape):
        assert issubclass(cls, StrictModel), cls
        assert cls.model_config["extra"] == "forbid", cls
    assert BenchReport.model_config["populate_by_name"] is True


# ---- the real files go through the loader ----------------------------------------------

def test_a_newer_manifest_asks_to_upgrade(tmp_path):
    from edgekit.manifest import MANIFEST_NAME, read_manifest

    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"schema_version": 2, "format": "onnx"}))
    with pytest.raises(ArtifactError, match="schema_version 2, newer than this edgekit reads.*upgrade edgekit"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "onnx"}))
    with pytest.raises(ArtifactError, match="schema_version None; this edgekit reads version 1: re-export"):
        read_manifest(tmp_path)


def test_a_newer_config_and_profile_ask_to_upgrade(tmp_path, monkeypatch):
    from edgekit.router.config import load_config
    from edgekit.targets.profile import parse_profile

    for var in ("EDGEKIT_CONFIG", "EDGEKIT_REMOTE_URL", "EDGEKIT_THRESHOLD", "EDGEKIT_DECISION_LOG"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "edgekit.toml"
    path.write_text("schema_version = 2\n")
    with pytest.raises(ConfigError, match="edgekit.toml has schema_version 2, newer .*upgrade edgekit"):
        load_config(path)
    path.write_text("[policy]\nthreshold = 2\n")  # the policy's own errors still name the file and the field
    with pytest.raises(ConfigError, match=r"edgekit.toml: field 'policy.threshold' is invalid"):
        load_config(path)
    with pytest.raises(ConfigError, match="my.toml has schema_version 9, newer"):
        parse_profile({"schema_version": 9, "name": "x"}, "my.toml")


def test_a_calibration_from_a_newer_edgekit_is_not_used(tmp_path, monkeypatch):
    from edgekit.profiler.roofline import Calibration, load_calibration, save_calibration

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path))
    cal = Calibration(backend="llama.cpp", artifact="a.gguf", host="h", measured_at="now", threads=2, compute="fp32",
                      host_bandwidth_gbs=10.0, host_peak_gops=100.0, host_core_gflops=50.0, forward_s=0.01)
    assert save_calibration(cal) and load_calibration("llama.cpp") == cal
    path = tmp_path / "calibration" / "llamacpp.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 2}))
    assert load_calibration("llama.cpp") is None
