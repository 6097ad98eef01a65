"""A stand-in device on 127.0.0.1: an SSH server (asyncssh) whose commands run as real processes here.

``python -m edgekit.devices.loopback --home DIR`` starts a server on a free
loopback port that accepts only the client keys in ``DIR/../authorized_keys``
(or ``--authorized-keys``), runs each command with ``/bin/sh -c`` in ``DIR``
with ``HOME=DIR`` (the device's home), and serves SFTP rooted at ``DIR``. It
prints one JSON line ``{"port": N, "host_key": "ssh-ed25519 ..."}`` when it
listens. The tests, ``benchmarks/device.py`` and the demo use it to run
``edgekit bench --device`` without a second machine; it needs no root.

``--client-dir DIR --alias NAME`` also makes a client side for a demo: a key
in ``DIR/.ssh/id_ed25519`` (authorized here), ``DIR/.ssh/config`` with a Host
``NAME`` pointing at this server and ``DIR/.ssh/known_hosts`` holding its key;
use it with ``HOME=DIR``. ``--path-prepend DIR`` puts DIR first on the commands' PATH (a test puts a
small ``df`` there to make the device's disk look full). Direct TCP/IP
forwarding is allowed to loopback addresses only, so one loopback server can be
another's ProxyJump.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import asyncssh

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate (public keys only)

    def password_auth_supported(self) -> bool:
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        allowed = dest_host in LOOPBACK  # ProxyJump through this server, to loopback only
        print(f"forward {dest_host}:{dest_port} {'allowed' if allowed else 'refused'}", file=sys.stderr, flush=True)
        return allowed


def _handler(home: Path, env: dict[str, str]):
    async def handle(process: asyncssh.SSHServerProcess) -> None:
        command = process.command or "exec /bin/sh"
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command, cwd=home, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr,
                                   send_eof=True, recv_eof=True)
        except (asyncssh.Error, OSError):  # the client went away: end the command too
            if proc.returncode is None:
                proc.kill()
        code = await proc.wait()
        try:
            await process.stdout.drain()
            await process.stderr.drain()
        except (asyncssh.Error, OSError):
            pass
        process.exit(code if code >= 0 else 128 - code)

    return handle


async def serve(home: Path, host_key: Path, authorized_keys: Path, port: int = 0,
                path_prepend: str | None = None) -> asyncssh.SSHAcceptor:
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "USER": os.environ.get("USER", "edgekit"), "SHELL": "/bin/sh"}
    for key in ("EDGEKIT_CACHE", "TMPDIR", "HF_HUB_OFFLINE"):
        if key in os.environ:
            env[key] = os.environ[key]
    if path_prepend:
        env["PATH"] = f"{path_prepend}:{env['PATH']}"
    return await asyncssh.create_server(
        _Server, "127.0.0.1", port, server_host_keys=[str(host_key)], authorized_client_keys=str(authorized_keys),
        process_factory=_handler(home, env), encoding=None,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(home).encode()), allow_scp=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.devices.loopback", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="folder standing in for the device's home")
    parser.add_argument("--host-key", help="server host key (made and kept beside --home if missing)")
    parser.add_argument("--authorized-keys", help="client public keys accepted (default: HOME/../authorized_keys)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path-prepend", default=None)
    parser.add_argument("--client-dir", default=None, help="make a client home (key, config, known_hosts) here")
    parser.add_argument("--alias", default="loopback-device", help="the Host alias written with --client-dir")
    args = parser.parse_args(argv)
    home = Path(args.home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    host_key = Path(args.host_key or home.parent / f"{home.name}-host-key")
    if not host_key.exists():
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(host_key))
    authorized = Path(args.authorized_keys or home.parent / "authorized_keys")
    client = Path(args.client_dir).absolute() if args.client_dir else None
    if client is not None:
        (client / ".ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(client / ".ssh" / "id_ed25519"))
        os.chmod(client / ".ssh" / "id_ed25519", 0o600)
        authorized.write_bytes(key.export_public_key())

    async def run() -> None:
        server = await serve(home, host_key, authorized, args.port, args.path_prepend)
        port = server.sockets[0].getsockname()[1]
        public = asyncssh.read_private_key(str(host_key)).export_public_key().decode().strip()
        if client is not None:  # written last: its config appearing means the server listens
            (client / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {public}\n")
            (client / ".ssh" / "config").write_text(f"Host {args.alias}\n  HostName 127.0.0.1\n  Port {port}\n"
                                                    f"  User {os.environ.get('USER', 'edgekit')}\n"
                                                    f"  IdentityFile {client / '.ssh' / 'id_ed25519'}\n")
        print(json.dumps({"port": port, "host_key": public}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
