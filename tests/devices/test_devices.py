"""``edgekit devices`` and ``edgekit bench --device`` against real SSH servers on 127.0.0.1.

Every test talks to loopback servers started here (conftest.py); the "device" is
this machine, reached only through SSH, with its own home folder. No timing is
asserted; waits are bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import error_line, run_cli
from tests.devices.conftest import wait_for

FAST = ["--runs", "1", "--warmup", "0", "--prompt-tokens", "16", "--gen-tokens", "8", "--timeout", "300"]


def _keys(x):
    """The nested key structure of a JSON value (what 'equal in schema' compares)."""
    if isinstance(x, dict):
        return {k: _keys(v) for k, v in x.items() if k not in ("batch_latencies_s",)}
    if isinstance(x, list):
        return [_keys(x[0])] if x and isinstance(x[0], (dict, list)) else []
    return None


# ---- registry ---------------------------------------------------------------------------

def test_add_list_remove_and_addresses(ssh_user, cli):
    proc = cli("devices", "add", "pi5", "ssh://me:hunter2@10.0.0.5")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "password" in line and "hunter2" not in line
    proc = cli("devices", "add", "Bad Name", "pi.local")
    assert proc.returncode == 2 and "device name" in error_line(proc)
    assert cli("devices", "add", "pi5", "ssh://me@pi.local:2222", "--memory-limit-mb", "512").returncode == 0
    assert cli("devices", "add", "jetson", "orin-alias").returncode == 0
    proc = cli("devices", "add", "pi5", "other")
    assert proc.returncode == 2 and "--force" in error_line(proc)
    listed = json.loads(cli("devices", "list", "--json").stdout)
    assert [(d["name"], d["host"], d.get("user"), d.get("port"), d.get("memory_limit_mb")) for d in listed] == [
        ("pi5", "pi.local", "me", 2222, 512), ("jetson", "orin-alias", None, None, None)]
    registry = (ssh_user.config_dir / "devices.toml").read_text()
    assert "hunter2" not in registry and "pi.local" in registry
    assert cli("devices", "remove", "jetson").returncode == 0
    assert [d["name"] for d in json.loads(cli("devices", "list", "--json").stdout)] == ["pi5"]
    proc = cli("devices", "check", "jetson")
    assert proc.returncode == 2 and "no device named 'jetson'" in error_line(proc)


# ---- connecting: ~/.ssh/config, host keys, ProxyJump, agent -------------------------------

def test_check_through_an_ssh_config_alias(ssh_user, loopback, cli):
    dev = loopback("a")
    ssh_user.trust(dev)
    ssh_user.add_host("board", dev)  # HostName, Port, User and a non-default IdentityFile only in ~/.ssh/config
    assert cli("devices", "add", "board", "board").returncode == 0
    proc = cli("devices", "check", "board", "--json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["reachable"] and facts["python"].count(".") == 2 and facts["cores"] >= 1
    assert facts["disk_free_bytes"] > 0 and facts["ram_bytes"] > 0 and facts["arch"]
    assert facts["edgekit"] is None  # not set up yet
    table = cli("devices", "check", "board")
    assert table.returncode == 0 and "not set up" in table.stdout


def test_unknown_host_key_refused_until_accepted(ssh_user, loopback, cli):
    dev = loopback("a")
    assert cli("devices", "add", "a", f"ssh://tester@127.0.0.1:{dev.port}").returncode == 0
    shutil.copy(ssh_user.key, ssh_user.ssh / "id_ed25519")  # a default key name: found without any config
    proc = cli("devices", "check", "a")
    assert proc.returncode == 2
    line = error_line(proc)
    assert "not in" in line and "known_hosts" in line and "--accept-new-host-key" in line and "SHA256:" in line
    assert (ssh_user.ssh / "known_hosts").read_text() == ""
    proc = cli("devices", "check", "a", "--accept-new-host-key", "--json")
    assert proc.returncode == 0, proc.stderr
    assert dev.host_key.split()[1] in (ssh_user.ssh / "known_hosts").read_text()
    assert cli("devices", "check", "a", "--json").returncode == 0  # now known: no flag needed


def test_changed_host_key_refused_even_with_accept(ssh_user, loopback, cli):
    import asyncssh

    dev = loopback("a")
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    (ssh_user.ssh / "known_hosts").write_text(f"[127.0.0.1]:{dev.port} {other}\n")
    ssh_user.add_host("a", dev)
    assert cli("devices", "add", "a", "a").returncode == 0
    proc = cli("devices", "check", "a", "--accept-new-host-key")
    assert proc.returncode == 2
    assert "CHANGED" in error_line(proc) and "refused" in error_line(proc)
    assert (ssh_user.ssh / "known_hosts").read_text() == f"[127.0.0.1]:{dev.port} {other}\n"  # untouched


def test_proxyjump_goes_through_the_jump_host(ssh_user, loopback, cli):
    jump, dev = loopback("jump"), loopback("inner")
    ssh_user.trust(jump)
    ssh_user.trust(dev)
    ssh_user.add_host("jumpbox", jump)
    ssh_user.add_host("inner", dev, extra="  ProxyJump jumpbox\n")
    assert cli("devices", "add", "inner", "inner").returncode == 0
    proc = cli("devices", "check", "inner", "--json")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: f"forward 127.0.0.1:{dev.port} allowed" in jump.log.read_text(), 30, "the jump host's log")


def test_key_from_the_ssh_agent(ssh_user, loopback, cli, tmp_path, monkeypatch):
    # OpenSSH's client tools are part of the setup this test needs (Debian: openssh-client), not optional
    assert shutil.which("ssh-agent") and shutil.which("ssh-add"), "install OpenSSH's client (ssh-agent, ssh-add)"
    dev = loopback("a")
    ssh_user.trust(dev)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 30, "ssh-agent's socket")
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(ssh_user.key)], env=env, check=True, capture_output=True, timeout=30)
        hidden = tmp_path / "key-elsewhere"
        ssh_user.key.rename(hidden)  # the key file is gone: only the agent holds it
        assert cli("devices", "add", "a", f"ssh://tester@127.0.0.1:{dev.port}").returncode == 0
        assert cli("devices", "check", "a").returncode == 2  # no agent: no key
        proc = run_cli("devices", "check", "a", "--json", env={"SSH_AUTH_SOCK": str(sock)})
        assert proc.returncode == 0, proc.stderr
    finally:
        agent.kill()
        agent.wait(timeout=30)


# ---- setup ----------------------------------------------------------------------------------

def test_setup_with_an_existing_python_then_cache_hit(ssh_user, loopback, cli):
    dev = loopback("a")
    ssh_user.trust(dev)
    ssh_user.add_host("a", dev)
    assert cli("devices", "add", "a", "a").returncode == 0
    proc = cli("devices", "setup", "a", "--python", sys.executable, "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["mode"] == "existing" and first["cached"] is False and first["bytes_sent"] > 0
    assert first["edgekit"]["file"].startswith(str(dev.home)), "edgekit must run from the pushed wheel"
    assert all(first["edgekit"]["runtimes"][m] for m in ("onnxruntime", "llama_cpp", "tokenizers", "numpy"))
    assert list(dev.home.glob(".edgekit/wheels/*/edgekit-*.whl"))
    second = json.loads(cli("devices", "setup", "a", "--python", sys.executable, "--json").stdout)
    assert second["cached"] is True and second["bytes_sent"] == 0 and second["build"] == first["build"]
    listed = json.loads(cli("devices", "list", "--json").stdout)[0]
    assert listed["python"] == sys.executable and listed["build"] == first["build"]
    check = json.loads(cli("devices", "check", "a", "--json").stdout)
    assert check["edgekit"]["edgekit"] == first["edgekit"]["edgekit"]


# ---- bench on a device ----------------------------------------------------------------------

def test_bench_gguf_and_onnx_on_a_device_like_a_local_bench(device_ready, cli, smollm2_gguf, tiny_onnx_artifact,
                                                           tmp_path):
    dev = device_ready("pi")
    proc = cli("targets", "detect", "--device", "pi", "--save", str(tmp_path / "pi.toml"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pi.toml").is_file()
    assert json.loads(cli("devices", "list", "--json").stdout)[0]["profile"].endswith("pi.toml")

    proc = cli("bench", smollm2_gguf, tiny_onnx_artifact, "--device", "pi", *FAST, "--json",
               "--report", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr
    remote = json.loads(proc.stdout)
    local = json.loads(cli("bench", smollm2_gguf, tiny_onnx_artifact, *FAST, "--json").stdout)
    assert [r["label"] for r in remote["results"]] == [r["label"] for r in local["results"]]
    for r, l in zip(remote["results"], local["results"]):
        assert r["status"] == "ok" and r["device"] == "pi" and l["device"] is None
        assert _keys(r["decoder"]) == _keys(l["decoder"]) and r["decoder"]["decode_tps"]["median"] > 0
        assert _keys(r["runs"][0]["measurements"]) == _keys(l["runs"][0]["measurements"])
        assert r["peak_rss_bytes"]["median"] > 0 and r["runs"][0]["peak_rss_bytes"] > 0
        assert set(r) == set(l)
        check = r["check"]  # predicted for the profile detected on the device, error in percent
        assert check["target"] == "pi" and check["profile_source"] == "detected on the device"
        expected = (check["decode_tps_predicted"] / check["decode_tps_measured"] - 1) * 100
        assert check["decode_error_pct"] == pytest.approx(expected, abs=0.051)
    assert remote["devices"][0]["pushes"] == 2 and remote["devices"][0]["pushes_skipped"] == 0
    first_bytes = remote["devices"][0]["bytes_sent"]
    assert first_bytes > smollm2_gguf.stat().st_size
    md = (tmp_path / "report" / "bench.md").read_text()
    assert "Measured on devices vs predicted" in md and "| pi |" in md
    assert (tmp_path / "report" / "bench.png").stat().st_size > 0

    again = cli("bench", smollm2_gguf, tiny_onnx_artifact, "--device", "pi", *FAST, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)["devices"][0]
    assert summary["pushes_skipped"] == 2, "the device already holds both artifacts with the same hashes"
    assert summary["bytes_sent"] < first_bytes / 50
    assert len(list(dev.home.glob(".edgekit/artifacts/*"))) == 2


def test_push_resumes_a_partial_upload(device_ready, smollm2_gguf):
    from edgekit.artifact import resolve_artifact
    from edgekit.devices.push import artifact_files, digest_of, push_artifact
    from edgekit.devices.registry import get_device
    from edgekit.devices.ssh import connect

    dev = device_ready("pi")
    art = resolve_artifact(smollm2_gguf)
    root = dev.home / ".edgekit" / "artifacts" / digest_of(artifact_files(art))
    root.mkdir(parents=True)
    half = smollm2_gguf.stat().st_size // 2
    with open(smollm2_gguf, "rb") as src, open(root / (smollm2_gguf.name + ".part"), "wb") as part:
        part.write(src.read(half))  # what a dropped upload leaves
    with connect(get_device("pi")) as conn:
        result = push_artifact(conn, art)
    assert not result.skipped and result.bytes_sent == smollm2_gguf.stat().st_size - half
    assert (root / smollm2_gguf.name).read_bytes() == smollm2_gguf.read_bytes()
    assert (root / ".edgekit-verified").is_file()


def test_two_devices_in_parallel_through_the_api(device_ready, smollm2_gguf):
    import edgekit

    device_ready("a")
    device_ready("b")
    report = edgekit.bench([smollm2_gguf], device=["a", "b"], targets=["raspberry-pi-5"], runs=1, warmup=0,
                           prompt_tokens=16, gen_tokens=8)
    assert sorted((r.device, r.status) for r in report.results) == [("a", "ok"), ("b", "ok")]
    assert [d.status for d in report.devices] == ["ok", "ok"]
    for r in report.results:
        assert r.check is not None and r.check.target == "raspberry-pi-5" and r.check.profile_source == "preset"
        assert r.predictions[0].target == "raspberry-pi-5" and r.check.decode_error_pct is not None


# ---- faults -----------------------------------------------------------------------------------

def test_server_killed_mid_run_fails_that_device_only(device_ready, smollm2_gguf, tmp_path):
    a, _b = device_ready("a"), device_ready("b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "bench", str(smollm2_gguf), "--device", "a", "--device", "b", "--runs", "3",
         "--warmup", "0", "--prompt-tokens", "16", "--gen-tokens", "48", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for(lambda: (a.home / ".edgekit" / "running").exists() or proc.poll() is not None, 300,
                 "a run to start on device a")
        assert proc.poll() is None, proc.communicate()[1]
        a.kill()
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    report = json.loads(stdout)
    by_device = {r["device"]: r for r in report["results"]}
    assert by_device["b"]["status"] == "ok"
    assert by_device["a"]["status"] in ("failed", "partial") and by_device["a"]["failure"] == "connection_lost"
    assert "lost" in by_device["a"]["error"]
    assert {d["name"]: d["status"] for d in report["devices"]}["b"] == "ok"
    assert "edgekit: error: a / " in stderr


def test_artifact_too_big_for_the_device_disk_is_refused_before_pushing(device_ready, cli, smollm2_gguf, tmp_path):
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    (fake / "df").write_text("#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
                             "echo '/dev/fake 100000 90000 10000 90% /'\n")  # 10 MB free
    (fake / "df").chmod(0o755)
    dev = device_ready("small", path_prepend=fake)
    proc = cli("bench", smollm2_gguf, "--device", "small", *FAST, "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)["results"][0]
    assert result["status"] == "failed" and result["failure"] == "disk_full" and result["runs"] == []
    assert "10 MB free" in result["error"] and "nothing was pushed" in result["error"]
    pushed = [p for p in dev.home.glob(".edgekit/artifacts/**/*") if p.is_file()]
    assert pushed == []
    assert "needs" in error_line(proc) and "small / " in error_line(proc)


def test_run_killed_by_the_device_memory_limit_is_out_of_memory(device_ready, cli, smollm2_gguf):
    device_ready("tiny-ram", "--memory-limit-mb", "100")  # SmolLM2's weights alone are 98 MB
    proc = cli("bench", smollm2_gguf, "--device", "tiny-ram", *FAST, "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)["results"][0]
    assert result["status"] == "failed" and result["failure"] == "out_of_memory"
    assert result["error"].startswith("out of memory on tiny-ram (memory limit 100 MB): killed (signal 9)")
    assert result["runs"][0]["error_type"] == "OutOfMemory"
    assert "out of memory" in error_line(proc)
