"""Target profiles: presets load and validate, user TOML files are checked field by field, detect works."""

from __future__ import annotations

import json

import pytest

from edgekit.errors import ConfigError
from edgekit.targets import TargetProfile, load_preset, load_profile_file, preset_names, resolve_target
from edgekit.targets.profile import Sourced, profile_to_toml
from tests.conftest import error_line

REQUIRED = {"raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "pixel-8", "galaxy-s24", "iphone-15-pro",
            "macbook-air-m2", "x86-laptop-avx2"}


def test_required_presets_are_shipped():
    assert REQUIRED <= set(preset_names())


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_preset_loads_validates_and_sources_every_number(name):
    p = load_preset(name)
    assert p.name == name
    assert p.threads <= p.total_cores
    numbers = [getattr(p, f) for f in TargetProfile.model_fields if isinstance(getattr(p, f), Sourced)]
    assert len(numbers) >= 5
    for n in numbers:
        assert n.value > 0 and len(n.source) > 10, (name, n)
    # the scaling helpers stay within the profile's own numbers
    assert p.bandwidth_gbs(1) <= p.bandwidth_gbs(p.threads) == p.memory_bandwidth_gbs.value
    assert p.peak_gops("fp32", 1) <= p.peak_gops("fp32", p.threads) == p.peak_gflops_fp32.value
    assert p.peak_gops("int8", p.threads) == p.peak_gops_int8.value
    # a preset written back to TOML reads back equal
    from edgekit.targets.profile import _toml_load, parse_profile

    assert parse_profile(_toml_load(profile_to_toml(p), "round trip"), "round trip") == p


def test_iphone_is_prediction_only_and_published_sizes_match_the_bits_per_weight_table():
    from edgekit.profiler.shape import shape_from_params

    assert load_preset("iphone-15-pro").prediction_only
    checked = 0
    for name in preset_names():
        for run in load_preset(name).published:
            if run.size_gb:
                shape = shape_from_params(int(run.params_b * 1e9), run.quant)
                assert shape.weight_bytes == pytest.approx(run.size_gb * 1e9, rel=0.08), (name, run.model)
                checked += 1
    assert checked >= 4


def test_user_profile_file_loads_and_is_accepted_as_target(profile_toml):
    path = profile_toml(name="lab-board", threads=2)
    p = resolve_target(str(path))
    assert p.name == "lab-board" and p.threads == 2


def test_missing_field_names_the_field(profile_toml, cli):
    path = profile_toml(drop=("memory_bandwidth_gbs",))
    with pytest.raises(ConfigError, match="memory_bandwidth_gbs' is missing"):
        load_profile_file(path)
    proc = cli("targets", "show", path)
    assert proc.returncode == 2
    assert "field 'memory_bandwidth_gbs' is missing" in error_line(proc)


def test_wrong_typed_fields_name_the_field(profile_toml, cli):
    proc = cli("targets", "show", profile_toml(threads="four"))
    assert proc.returncode == 2 and "field 'threads' is invalid" in error_line(proc)
    proc = cli("targets", "show", profile_toml(ram_gb=8))  # a bare number: the source note is required
    assert proc.returncode == 2 and "field 'ram_gb' is invalid" in error_line(proc)
    proc = cli("targets", "show", profile_toml(peak_gflops_fp32={"value": -1.0, "source": "made up"}))
    assert proc.returncode == 2 and "peak_gflops_fp32.value" in error_line(proc)
    proc = cli("targets", "show", profile_toml(isa=["neon", "warp-drive"]))
    assert proc.returncode == 2 and "warp-drive" in error_line(proc)
    proc = cli("targets", "show", profile_toml(threads=64))
    assert proc.returncode == 2 and "threads (64) is more than the cores" in error_line(proc)
    proc = cli("targets", "show", profile_toml(colour="red"))
    assert proc.returncode == 2 and "unknown field 'colour'" in error_line(proc)


def test_broken_toml_and_missing_file(tmp_path, cli):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\nthreads = [\n")
    proc = cli("targets", "show", bad)
    assert proc.returncode == 2 and "is not valid TOML" in error_line(proc)
    proc = cli("targets", "show", tmp_path / "nope.toml")
    assert proc.returncode == 2 and "does not exist" in error_line(proc)


def test_unknown_target_lists_the_valid_ones(cli):
    proc = cli("targets", "show", "raspberry-pi-9")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "unknown target 'raspberry-pi-9'" in line
    assert all(n in line for n in REQUIRED)


def test_list_and_show(cli):
    proc = cli("targets", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    names = {row["name"] for row in json.loads(proc.stdout)}
    assert REQUIRED <= names
    proc = cli("targets", "show", "raspberry-pi-5")
    assert proc.returncode == 0 and "Cortex-A76" in proc.stdout and "geerlingguy" in proc.stdout
    proc = cli("targets", "show", "raspberry-pi-5", "--toml")
    assert proc.returncode == 0 and 'name = "raspberry-pi-5"' in proc.stdout


def test_detect_produces_a_valid_profile_and_saves_it(tmp_path, cli):
    out = tmp_path / "this-host.toml"
    proc = cli("targets", "detect", "--save", out, "--name", "this-host", "--json")
    assert proc.returncode == 0, proc.stderr
    detected = TargetProfile.model_validate(json.loads(proc.stdout))
    assert detected.name == "this-host" and detected.measured_at
    assert detected.single_thread_bandwidth_gbs is not None and detected.single_thread_gflops_fp32 is not None
    assert all(s.source.startswith("measured by edgekit targets detect") for s in
               (detected.memory_bandwidth_gbs, detected.peak_gflops_fp32, detected.peak_gops_int8))
    assert load_profile_file(out) == detected
    proc = cli("targets", "show", out)
    assert proc.returncode == 0 and "this-host" in proc.stdout
    proc = cli("targets", "detect", "--save", out)  # exists: refuse before measuring
    assert proc.returncode == 2 and "already exists" in error_line(proc)
    proc = cli("targets", "detect", "--name", "Not A Name")
    assert proc.returncode == 2 and "--name" in error_line(proc)
