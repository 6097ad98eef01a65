"""The SSH transport to a device (asyncssh), behind a small synchronous facade.

Connections honour the user's ``~/.ssh``: ``~/.ssh/config`` (Host aliases,
HostName, User, Port, IdentityFile, ProxyJump), the default keys there, and the
SSH agent (``$SSH_AUTH_SOCK``). Password and keyboard-interactive logins are not
offered: edgekit never asks for, stores or passes a secret. Host keys are
checked against ``~/.ssh/known_hosts``; an unknown key is refused unless the
caller accepts it explicitly (``accept_new_host_key=True``, which adds it to
known_hosts like OpenSSH's ``StrictHostKeyChecking=accept-new``), and a key
that differs from the one recorded is always refused.

Each :class:`Connection` owns one event loop, so one thread per device drives
its connection while other threads drive theirs (devices run in parallel).
Third-party errors become :class:`DeviceError` / :class:`HostKeyError` here.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit.devices.registry import Device
from edgekit.errors import ConfigError, DeviceError, HostKeyError, MissingDependencyError

try:
    import asyncssh
except ImportError as exc:  # pragma: no cover - the [device] extra is missing
    raise MissingDependencyError("asyncssh (for devices over SSH)", "device") from exc

CONNECT_TIMEOUT = 20.0
CHUNK = 4 << 20


def ssh_dir() -> Path:
    return Path.home() / ".ssh"


@dataclass
class Completed:
    code: int | None  # None: the connection dropped before the command finished
    signal: str | None
    stdout: bytes
    stderr: bytes


def resolve(device: Device) -> tuple[str, int, str]:
    """(HostName, Port, User) of ``device`` after ~/.ssh/config."""
    from asyncssh.config import SSHClientConfig

    cfg = ssh_dir() / "config"
    local = getpass.getuser()
    conf = SSHClientConfig.load(None, [cfg] if cfg.is_file() else [], False, False, False, local,
                                device.user or (), device.host, device.port or ())
    return (str(conf.get("Hostname", device.host)), int(conf.get("Port", device.port or 22)),
            str(conf.get("User", device.user or local)))


def _known_hosts_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class Connection:
    """One SSH connection to ``device``: run commands, push files (resumable), count bytes sent."""

    def __init__(self, device: Device, *, accept_new_host_key: bool = False, timeout: float = CONNECT_TIMEOUT):
        self.device = device
        self.bytes_sent = 0
        self.lost = False
        self._sftp = None
        self.loop = asyncio.new_event_loop()
        self.accepted_key: str | None = None
        try:
            self.conn = self._sync(self._connect(accept_new_host_key, timeout), timeout * 2 + 10)
        except BaseException:
            self.loop.close()
            raise

    # ---- connecting ----------------------------------------------------------------
    def _options(self, timeout: float) -> dict:
        cfg = ssh_dir() / "config"
        known = ssh_dir() / "known_hosts"
        opts = dict(config=[str(cfg)] if cfg.is_file() else [],
                    known_hosts=str(known) if known.is_file() else asyncssh.import_known_hosts(""),
                    connect_timeout=timeout, login_timeout=timeout, keepalive_interval=15, keepalive_count_max=4,
                    password_auth=False, kbdint_auth=False)
        if self.device.user:
            opts["username"] = self.device.user
        if self.device.port:
            opts["port"] = self.device.port
        return opts

    async def _connect(self, accept_new: bool, timeout: float):
        name = self.device.name
        try:
            try:
                return await asyncssh.connect(self.device.host, **self._options(timeout))
            except asyncssh.HostKeyNotVerifiable as exc:
                await self._host_key_refused(exc, accept_new, timeout)
                return await asyncssh.connect(self.device.host, **self._options(timeout))
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyError(f"device {name}: host key not verifiable ({exc})") from None
        except asyncssh.PermissionDenied:
            raise ConfigError(f"device {name} ({self.device.address}) refused every key offered: add your public "
                              "key to its ~/.ssh/authorized_keys, load it into the SSH agent, or set IdentityFile "
                              "in ~/.ssh/config", param="device") from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise DeviceError(f"device {name} ({self.device.address}) is unreachable: "
                              f"{_describe(exc)}") from None

    async def _host_key_refused(self, exc: Exception, accept_new: bool, timeout: float) -> None:
        host, port, _user = resolve(self.device)
        known_path = ssh_dir() / "known_hosts"
        try:
            addr = socket.getaddrinfo(host, port)[0][4][0]
        except OSError:
            addr = host
        known = asyncssh.read_known_hosts(str(known_path)) if known_path.is_file() else asyncssh.import_known_hosts("")
        key = await asyncssh.get_server_host_key(self.device.host, self.device.port or (), config=self._options(timeout)["config"])
        fingerprint = key.get_fingerprint() if key is not None else "unknown"
        if known.match(host, addr, port)[0]:
            raise HostKeyError(f"device {self.device.name}: the host key of {_known_hosts_pattern(host, port)} "
                               f"CHANGED (now {fingerprint}): refused; if the device was reinstalled, remove the "
                               f"old key (ssh-keygen -R '{_known_hosts_pattern(host, port)}') and check the new one")
        if not accept_new or key is None:
            raise HostKeyError(f"device {self.device.name}: the host key of {_known_hosts_pattern(host, port)} is "
                               f"not in {known_path} ({fingerprint}): check it, then pass accept_new_host_key=True "
                               "to trust it", param="accept_new_host_key")
        known_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{_known_hosts_pattern(host, port)} {key.export_public_key('openssh').decode().strip()}\n"
        with open(known_path, "a") as fh:
            fh.write(line)
        self.accepted_key = fingerprint

    # ---- running ---------------------------------------------------------------------
    def _sync(self, coro, timeout: float | None):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def run(self, command: str, *, input: bytes | None = None, timeout: float | None = 120.0,
            keep_stdin: bool = False) -> Completed:
        """Run ``command`` in the device's shell (in its home). ``keep_stdin``: write ``input`` and keep stdin open
        until the command ends (the device side watches for EOF: a dropped connection ends the command there)."""
        if self.lost:
            raise DeviceError(f"device {self.device.name}: the connection was lost earlier")

        async def go():
            proc = await self.conn.create_process(command, encoding=None, **({} if keep_stdin else {"input": input}))
            if keep_stdin and input:
                proc.stdin.write(input)
            return await proc.wait()

        self.bytes_sent += len(command) + len(input or b"")
        try:
            res = self._sync(go(), timeout)
        except asyncio.TimeoutError:
            raise DeviceError(f"device {self.device.name}: no answer within {timeout:g} s") from None
        except (OSError, asyncssh.Error) as exc:
            self.lost = True
            raise DeviceError(f"device {self.device.name}: connection lost ({_describe(exc)})") from None
        if res.exit_status is None and res.exit_signal is None:
            self.lost = True
            raise DeviceError(f"device {self.device.name}: connection lost while running a command")
        sig = res.exit_signal[0] if res.exit_signal else None
        code = res.exit_status if res.exit_status is not None and res.exit_status >= 0 else None
        return Completed(code, sig, res.stdout or b"", res.stderr or b"")

    # ---- files -------------------------------------------------------------------------
    async def _client(self):
        if self._sftp is None:
            self._sftp = await self.conn.start_sftp_client()
        return self._sftp

    def stat_size(self, path: str) -> int | None:
        async def go():
            sftp = await self._client()
            try:
                return (await sftp.stat(path)).size
            except asyncssh.SFTPNoSuchFile:
                return None

        return self._files(go())

    def makedirs(self, path: str) -> None:
        async def go():
            await (await self._client()).makedirs(path, exist_ok=True)

        self._files(go())

    def push_file(self, local: Path, remote: str, size: int, on_bytes=None) -> int:
        """Upload ``local`` to ``remote`` (relative to the device's home) through ``remote.part``.

        A ``.part`` left by a dropped upload is continued from its size. Returns the bytes sent.
        """
        async def go():
            sftp = await self._client()
            part = remote + ".part"
            try:
                offset = (await sftp.stat(part)).size or 0
            except asyncssh.SFTPNoSuchFile:
                offset = 0
            if offset > size:
                offset = 0
            sent = 0
            async with sftp.open(part, "r+b" if offset else "wb") as f:
                with open(local, "rb") as fh:
                    fh.seek(offset)
                    pos = offset
                    while block := fh.read(CHUNK):
                        await f.write(block, pos)
                        pos += len(block)
                        sent += len(block)
                        self.bytes_sent += len(block)
                        if on_bytes is not None:
                            on_bytes(len(block))
            try:
                await sftp.posix_rename(part, remote)
            except (asyncssh.SFTPOpUnsupported, asyncssh.SFTPError):
                await sftp.rename(part, remote)
            return sent

        return self._files(go())

    def _files(self, coro, timeout: float | None = None):
        if self.lost:
            raise DeviceError(f"device {self.device.name}: the connection was lost earlier")
        try:
            return self._sync(coro, timeout)
        except asyncssh.SFTPError as exc:
            raise DeviceError(f"device {self.device.name}: file transfer failed: {exc.reason}") from None
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            self.lost = True
            raise DeviceError(f"device {self.device.name}: connection lost during a file transfer "
                              f"({_describe(exc)}); run again to continue where it stopped") from None

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            if self._sftp is not None:
                self._sftp.exit()
            self.conn.close()
            self.loop.run_until_complete(asyncio.wait_for(self.conn.wait_closed(), 5))
        except (OSError, asyncssh.Error, asyncio.TimeoutError):
            pass
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def connect(device: Device, *, accept_new_host_key: bool = False, retries: int = 0) -> Connection:
    """A :class:`Connection`, retried ``retries`` times (1 s apart) when the device is unreachable."""
    for attempt in range(retries + 1):
        try:
            return Connection(device, accept_new_host_key=accept_new_host_key)
        except DeviceError:
            if attempt == retries:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")
