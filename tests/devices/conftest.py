"""Devices over a real SSH server on 127.0.0.1 (edgekit/devices/loopback.py, asyncssh), no root, no network.

Each test gets a fresh user: ``HOME`` with ``~/.ssh`` (a client key made here, a
config file, known_hosts), an empty config folder for the device registry and
no SSH agent. ``loopback(...)`` starts a server process with its own host key
and a separate folder standing in for the device's home; the server runs
commands as real processes there. Servers are killed (with their process
group) when the test ends.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.profiler.conftest import tiny_onnx_artifact  # noqa: F401  (a tiny ONNX decoder artifact, seconds to make)

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


@dataclass
class LoopbackDevice:
    """One SSH server standing in for a device."""

    name: str
    port: int
    home: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen
    log: Path

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key}\n"

    def kill(self) -> None:
        """SIGKILL the server alone: its connections drop as if the device lost power or network."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


@dataclass
class SshUser:
    home: Path
    key: Path  # private key; the public one is authorized by every server started by ``loopback``
    authorized_keys: Path
    config_dir: Path

    @property
    def ssh(self) -> Path:
        return self.home / ".ssh"

    def trust(self, dev: LoopbackDevice) -> None:
        with open(self.ssh / "known_hosts", "a") as fh:
            fh.write(dev.known_hosts_line)

    def add_host(self, alias: str, dev: LoopbackDevice, extra: str = "") -> None:
        """A Host block in ~/.ssh/config: the alias, HostName, Port, User, IdentityFile (a non-default name)."""
        with open(self.ssh / "config", "a") as fh:
            fh.write(f"\nHost {alias}\n  HostName 127.0.0.1\n  Port {dev.port}\n  User tester\n"
                     f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n{extra}")


@pytest.fixture
def ssh_user(tmp_path, monkeypatch) -> SshUser:
    import asyncssh

    home = tmp_path / "user"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_path = home / ".ssh" / "edgekit_test_key"  # not a default name: only IdentityFile finds it
    key.write_private_key(str(key_path))
    key.write_public_key(str(key_path) + ".pub")
    os.chmod(key_path, 0o600)
    authorized = tmp_path / "authorized_keys"
    authorized.write_bytes(key.export_public_key())
    (home / ".ssh" / "known_hosts").write_text("")
    (home / ".ssh" / "config").write_text("")
    config_dir = tmp_path / "config"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EDGEKIT_CONFIG_DIR", str(config_dir))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return SshUser(home, key_path, authorized, config_dir)


@pytest.fixture
def loopback(tmp_path, ssh_user):
    """``loopback(name, path_prepend=None)`` -> a started :class:`LoopbackDevice` (killed at teardown)."""
    started: list[LoopbackDevice] = []

    def start(name: str, path_prepend: Path | None = None) -> LoopbackDevice:
        home = tmp_path / f"device-{name}"
        home.mkdir()
        log = tmp_path / f"server-{name}.log"
        cmd = [sys.executable, "-m", "edgekit.devices.loopback", "--home", str(home),
               "--authorized-keys", str(ssh_user.authorized_keys), "--host-key", str(tmp_path / f"{name}-host-key")]
        if path_prepend is not None:
            cmd += ["--path-prepend", str(path_prepend)]
        env = {**os.environ, "HOME": str(home)}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "wb"), cwd=ROOT, env=env,
                                start_new_session=True)
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            raise RuntimeError(f"loopback SSH server {name} did not start: {log.read_text()[-2000:]}")
        info = json.loads(line)
        dev = LoopbackDevice(name, info["port"], home, info["host_key"], proc, log)
        started.append(dev)
        return dev

    yield start
    for dev in started:
        dev.stop()


@pytest.fixture
def device_ready(ssh_user, loopback, cli):
    """``device_ready(name, **add_options)``: a loopback device registered under an alias, trusted, set up with
    ``--python`` = this interpreter (edgekit itself is pushed and unpacked there)."""

    def make(name: str, *add_args: str, path_prepend: Path | None = None) -> LoopbackDevice:
        dev = loopback(name, path_prepend)
        ssh_user.trust(dev)
        ssh_user.add_host(f"{name}-alias", dev)
        proc = cli("devices", "add", name, f"{name}-alias", *add_args)
        assert proc.returncode == 0, proc.stderr
        proc = cli("devices", "setup", name, "--python", sys.executable, "--json")
        assert proc.returncode == 0, proc.stderr
        return dev

    return make


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
