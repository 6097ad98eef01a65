"""Device side of ``edgekit bench --device``: ``python -m edgekit.devices.agent``, run over SSH on the device.

It reads one JSON request line on stdin and prints one JSON line:

* ``run``: one bench run, exactly as a local bench does it: the same fresh-process
  worker (``python -m edgekit.profiler.worker``) started by the same launcher
  (``profiler.bench.run_once``: peak RSS from ``wait4``, the process group killed
  at the timeout), with this device's Python. A per-device memory limit
  (``memory_limit_mb``) is enforced on the run like a cgroup's ``memory.max`` or
  Android's low-memory killer: when its resident memory exceeds the limit it is
  killed with SIGKILL. A run killed that way, or by the kernel's OOM killer, is
  reported as ``out_of_memory``.
* ``detect``: the device's target profile (``targets.detect.detect``: cores, ISA,
  RAM, bandwidth and compute measured there).
* ``version``: edgekit's version here and which runtimes import.

The client keeps stdin open while a request runs: when the connection drops,
stdin reaches EOF and the agent kills the run's process group and exits, so a
dropped device does not keep a model loaded.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

# text a run prints when an allocation failed: with a memory limit, the run died for memory
MEMORY_WORDS = ("memoryerror", "bad_alloc", "cannot allocate memory", "out of memory", "failed to allocate",
                "mem_buffer != null", "enomem", "unable to allocate")


def classify(code: int | None, timed_out: bool, text: str, limited: bool) -> str | None:
    """Why a run failed: 'timeout', 'out_of_memory', 'crashed', 'error', or None when it succeeded.

    A run killed by SIGKILL that the bench did not kill (no timeout) was killed by the kernel's OOM
    killer (or Android's low-memory killer): out of memory. Under a memory limit, a crash or an
    allocation failure is out of memory too.
    """
    if timed_out:
        return "timeout"
    if code == 0:
        return None
    low = text.lower()
    if code == -signal.SIGKILL or (limited and ((code is not None and code < 0) or any(w in low for w in MEMORY_WORDS))):
        return "out_of_memory"
    if any(w in low for w in MEMORY_WORDS):
        return "out_of_memory"
    return "crashed" if code is not None and code < 0 else "error"


def _kill_children() -> None:
    """SIGKILL the process group of each child (the launcher leads its own session: the run goes with it)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for task in tasks:
        try:
            kids = Path(f"/proc/self/task/{task}/children").read_text().split()
        except OSError:
            continue
        for pid in kids:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def _children(pid: int | str = "self") -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(x) for x in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _memory_limit(limit_bytes: int, stop: threading.Event, seen: dict) -> None:
    """Kill the run (the launcher's process group) once its resident memory exceeds ``limit_bytes``."""
    while not stop.wait(0.02):
        for launcher in _children():
            rss = sum(_rss(p) for p in _children(launcher))
            seen["peak"] = max(seen.get("peak", 0), rss)
            if rss > limit_bytes:
                seen["killed_at"] = rss
                try:
                    os.killpg(launcher, signal.SIGKILL)
                except OSError:
                    pass


def _watch_stdin() -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        _kill_children()  # the client went away
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def run(req: dict) -> dict:
    from edgekit.profiler.bench import run_once, worker_command

    os.environ.setdefault("GGML_NO_BACKTRACE", "1")  # a llama.cpp abort would otherwise start gdb on the device
    cmd = worker_command(Path(req["artifact"]), threads=req.get("threads"), context=req.get("context"),
                         prompt_tokens=req["prompt_tokens"], gen_tokens=req["gen_tokens"],
                         batch_reps=req["batch_reps"])
    limit = req.get("memory_limit_mb")
    stop, seen = threading.Event(), {}
    if limit:
        threading.Thread(target=_memory_limit, args=(int(limit) * (1 << 20), stop, seen), daemon=True).start()
    marker = Path(req.get("remote_dir", ".edgekit")).expanduser() / "running"
    try:
        marker.write_text(json.dumps({"pid": os.getpid(), "artifact": req["artifact"]}))
    except OSError:
        marker = None
    try:
        data, code, timed_out, rss, wall, stderr = run_once(cmd, float(req["run_timeout_s"]))
    finally:
        stop.set()
        if marker is not None:
            marker.unlink(missing_ok=True)
    if "killed_at" in seen:
        stderr = (f"killed (signal 9) by the device's memory limit of {limit} MB at "
                  f"{seen['killed_at'] / (1 << 20):.0f} MB resident\n{stderr}")
    text = stderr + " " + json.dumps(data.get("error") or "")
    return {"data": data, "code": code, "timed_out": timed_out, "rss": rss, "wall": wall, "stderr": stderr,
            "failure": classify(code, timed_out, text, bool(limit)), "memory_limit_mb": limit}


def detect(req: dict) -> dict:
    from edgekit.targets.detect import detect as detect_host

    return {"profile": detect_host(name=req["name"]).model_dump(mode="json")}


def version(req: dict) -> dict:
    import importlib.util

    from edgekit.version import __version__

    runtimes = {m: importlib.util.find_spec(m) is not None for m in ("onnxruntime", "llama_cpp", "tokenizers", "numpy")}
    heavy = {m: importlib.util.find_spec(m) is not None for m in ("torch", "transformers")}
    package_init = str(Path(__file__).parents[1] / "__init__.py")  # what edgekit.__file__ says
    return {"edgekit": __version__, "file": package_init, "python": sys.version.split()[0],
            "runtimes": runtimes, "heavy": heavy}


def main() -> int:
    line = sys.stdin.readline()
    try:
        req = json.loads(line)
    except ValueError:
        print(json.dumps({"error": "agent: the request is not one JSON line"}))
        return 2
    _watch_stdin()
    ops = {"run": run, "detect": detect, "version": version}
    try:
        out = ops[req["op"]](req)
    except Exception as exc:  # one line back to the client
        out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the stdin watcher is still reading, and finalization would wait on its lock
