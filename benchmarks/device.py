"""Overhead of a device run over SSH against a local bench of the same artifact, and bytes on the wire.

The "device" is this machine behind the loopback SSH server (edgekit/devices/loopback.py), set up with
``--python`` = this interpreter, so the runs themselves cost the same on both sides and the difference is
edgekit's device path: connecting, the setup check (a cache hit), the push (or its skip), the agent's start
per run and the JSON coming back. Prints one table; run it on a quiet machine:

    .venv/bin/python benchmarks/device.py [--runs 3] [--artifact PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_device(tmp: Path) -> tuple[subprocess.Popen, int]:
    import asyncssh

    (tmp / "user" / ".ssh").mkdir(parents=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp / "user" / ".ssh" / "id_ed25519"))
    (tmp / "authorized_keys").write_bytes(key.export_public_key())
    proc = subprocess.Popen([sys.executable, "-m", "edgekit.devices.loopback", "--home", str(tmp / "device"),
                             "--authorized-keys", str(tmp / "authorized_keys")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True)
    info = json.loads(proc.stdout.readline())
    (tmp / "user" / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{info['port']} {info['host_key']}\n")
    os.environ.update(HOME=str(tmp / "user"), EDGEKIT_CONFIG_DIR=str(tmp / "config"))
    os.environ.pop("SSH_AUTH_SOCK", None)
    return proc, info["port"]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--artifact", default=None, help="default: the packaged SmolLM2 GGUF")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("EDGEKIT_CACHE", tempfile.mkdtemp(prefix="edgekit-bench-cache-"))
    from edgekit.packaged import smollm2_gguf_path

    artifact = Path(args.artifact or smollm2_gguf_path())
    settings = dict(runs=args.runs, warmup=0, prompt_tokens=64, gen_tokens=32, calibrate_host=False)
    with tempfile.TemporaryDirectory(prefix="edgekit-device-bench-") as tmp:
        server, port = start_device(Path(tmp))
        try:
            from edgekit.artifact import resolve_artifact
            from edgekit.devices import remote
            from edgekit.devices.bench import bench_devices
            from edgekit.devices.push import push_artifact
            from edgekit.devices.registry import add_device, get_device
            from edgekit.devices.setup import build_wheel, install, setup_device
            from edgekit.devices.ssh import connect
            from edgekit.profiler.bench import bench, run_once, worker_command

            add_device("loop", f"ssh://bench@127.0.0.1:{port}")
            (_wheel, _digest), t_wheel = timed(build_wheel)
            first_setup, t_setup = timed(lambda: setup_device("loop", python=sys.executable))
            local, t_local = timed(lambda: bench([artifact], **settings))
            dev1, t_dev1 = timed(lambda: bench_devices([artifact], ["loop"], **settings))
            dev2, t_dev2 = timed(lambda: bench_devices([artifact], ["loop"], **settings))
            conn, t_connect = timed(lambda: connect(get_device("loop")))
            with conn:
                _r, t_hit = timed(lambda: install(conn, python=sys.executable))
                pushed, t_skip = timed(lambda: push_artifact(conn, resolve_artifact(artifact)))
                req = dict(artifact=pushed.remote_path, threads=2, context=None, prompt_tokens=64, gen_tokens=32,
                           batch_reps=1, run_timeout_s=600, memory_limit_mb=None)
                _o, t_remote_run = timed(lambda: remote.agent(conn, "run", timeout=900, **req))
            cmd = worker_command(artifact, threads=2, context=None, prompt_tokens=64, gen_tokens=32, batch_reps=1)
            _l, t_local_run = timed(lambda: run_once(cmd, 600))
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    d1, d2 = dev1.devices[0], dev2.devices[0]
    med = lambda rep: rep.results[0].decoder.decode_tps.median
    rows = [
        ("build the wheel (cached after the first)", t_wheel, "-"),
        ("setup, first (push wheel, unpack, check)", t_setup, first_setup["bytes_sent"]),
        (f"local bench, {args.runs} runs", t_local, "-"),
        (f"device bench, first ({args.runs} runs + push)", t_dev1, d1.bytes_sent),
        (f"device bench, second ({args.runs} runs, push skipped)", t_dev2, d2.bytes_sent),
        ("  connect (SSH handshake, key auth)", t_connect, "-"),
        ("  setup check, cache hit", t_hit, "-"),
        ("  push, skipped (same hashes there)", t_skip, "-"),
        ("  one run through the agent", t_remote_run, "-"),
        ("  one run locally (run_once)", t_local_run, "-"),
    ]
    print(f"artifact: {artifact.name} ({artifact.stat().st_size / 1e6:.0f} MB); {args.runs} runs of 64+32 tokens\n")
    print(f"| {'step':<52} | {'wall s':>7} | {'bytes sent':>12} |")
    print(f"|{'-' * 54}|{'-' * 9}|{'-' * 14}|")
    for name, secs, nbytes in rows:
        print(f"| {name:<52} | {secs:7.2f} | {nbytes if nbytes == '-' else f'{nbytes:,}':>12} |")
    print(f"\ndevice overhead per bench: first {t_dev1 - t_local:+.2f} s, second {t_dev2 - t_local:+.2f} s "
          f"({(t_dev2 / t_local - 1) * 100:+.0f}% of the local bench); per run {t_remote_run - t_local_run:+.2f} s")
    print(f"decode tok/s: local {med(local):.1f}, device first {med(dev1):.1f}, second {med(dev2):.1f}")
    print(f"pushes skipped on the second run: {d2.pushes_skipped} of {d2.pushes}; setup cache hit: {d2.setup_cached}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
