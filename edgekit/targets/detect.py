"""Read the host (cores, ISA features, RAM) and measure it with short microbenchmarks.

The roofline needs the same kinds of numbers for the host as the presets give
for devices: sustained memory bandwidth and peak fp32/int8 throughput, each with
one thread and with all threads (the calibration is done at whatever thread
count the bench used). Each microbenchmark takes well under two seconds:

* bandwidth: numpy copies of a 128 MiB array split across threads (numpy
  releases the GIL while copying), counted the STREAM way (bytes read + bytes
  written) like the published figures in the presets;
* compute: one MatMul (fp32) and one MatMulInteger (uint8 x int8) of 1024x1024
  matrices in onnxruntime, the library the ONNX artifacts run on, with its
  intra-op thread count set. The one-node ONNX graphs are encoded here as
  protobuf bytes (a few fields), so detection needs neither the ``onnx``
  package nor torch.

Each value is the best of several passes, taken in rounds that alternate the
thread counts.

The host is often shared: ``cpu_wait_seconds`` reads how long this process's
threads waited for a CPU (``/proc/self/task/*/schedstat``), and the profile notes
how contended the machine was while measuring.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.targets.profile import CoreCluster, Sourced, TargetProfile, parse_profile, today

MICROBENCH_SECONDS = 0.35  # per (benchmark, thread count): best-of passes within this budget
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57", "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77",
    "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
    "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720", "0xd82": "Cortex-X4",
}
X86_ISA = {
    "sse4_2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f",
    "avx512bw": "avx512bw", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16", "avx_vnni": "avx_vnni",
    "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
}
ARM_ISA = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "asimdhp": "fp16", "bf16": "bf16", "sve": "sve",
           "sve2": "sve2", "sme": "sme"}


# ---- contention ---------------------------------------------------------------

def cpu_wait_seconds() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU (Linux schedstat)."""
    total = 0
    try:
        for task in os.scandir("/proc/self/task"):
            with open(f"{task.path}/schedstat") as fh:
                total += int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


# ---- reading the host ------------------------------------------------------------

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def usable_cpus() -> int:
    """CPUs this process may run on: affinity mask, then the cgroup's CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _read("/sys/fs/cgroup/cpu.max").split()
    if len(quota) == 2 and quota[0] != "max":
        try:
            n = max(1, min(n, int(float(quota[0]) / float(quota[1]))))
        except ValueError:
            pass
    return n


def _cpuinfo() -> list[dict[str, str]]:
    blocks, cur = [], {}
    for line in _read("/proc/cpuinfo").splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(":")
        cur[key.strip().lower()] = value.strip()
    if cur:
        blocks.append(cur)
    return blocks


def _clusters_linux(arch: str, cpus: int) -> tuple[list[CoreCluster], str]:
    info = _cpuinfo()
    groups: dict[tuple[str, float | None], int] = {}
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(cpus))
    for i in allowed[:cpus]:
        block = info[i] if i < len(info) else (info[0] if info else {})
        if arch == "arm64":
            name = ARM_PARTS.get(block.get("cpu part", "").lower(), f"arm part {block.get('cpu part', '?')}")
        else:
            name = block.get("model name", platform.processor() or "x86_64 core")
        khz = _read(f"/sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq").strip()
        ghz = round(int(khz) / 1e6, 2) if khz.isdigit() else None
        groups[(name, ghz)] = groups.get((name, ghz), 0) + 1
    clusters = [CoreCluster(name=n, cores=c, max_ghz=g) for (n, g), c in sorted(groups.items(), key=lambda kv: -(kv[0][1] or 0))]
    soc = (info[0].get("model name") or info[0].get("hardware", "")) if info else ""
    return clusters or [CoreCluster(name=platform.machine(), cores=cpus)], soc


def _isa_linux(arch: str) -> list[str]:
    info = _cpuinfo()
    if not info:
        return []
    words = set((info[0].get("flags") or info[0].get("features") or "").split())
    table = ARM_ISA if arch == "arm64" else X86_ISA
    found = {canon for word, canon in table.items() if word in words}
    if arch == "arm64" and "fp16" in found and "fphp" not in words:
        found.discard("fp16")
    return sorted(found)


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _meminfo() -> tuple[float, float]:
    """(total, available) RAM in GB, honouring a cgroup memory limit."""
    fields = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    total = fields.get("MemTotal") or int(_sysctl("hw.memsize") or 0) or 1
    avail = fields.get("MemAvailable", total)
    limit = _read("/sys/fs/cgroup/memory.max").strip()
    if limit.isdigit():
        total, avail = min(total, int(limit)), min(avail, int(limit))
    return total / 1e9, avail / 1e9


def host_facts() -> dict[str, Any]:
    """What the host says about itself, without measuring anything."""
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x86_64"
    system = platform.system().lower()
    os_name = {"darwin": "macos", "windows": "windows"}.get(system, "linux")
    if "ANDROID_ROOT" in os.environ:
        os_name = "android"
    cpus = usable_cpus()
    if os_name == "linux" or os_name == "android":
        clusters, soc = _clusters_linux(arch, cpus)
        isa = _isa_linux(arch)
    else:
        soc = _sysctl("machdep.cpu.brand_string") or platform.processor()
        clusters = [CoreCluster(name=soc or machine, cores=cpus)]
        isa = ["neon", "dotprod", "fp16"] if arch == "arm64" else []
    total, avail = _meminfo()
    return {"arch": arch, "os": os_name, "soc": soc, "clusters": clusters, "cpus": cpus, "isa": isa,
            "ram_gb": total, "available_gb": avail, "hostname": socket.gethostname()}


# ---- microbenchmarks --------------------------------------------------------------

def _run_threads(n: int, fn) -> float:
    workers = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


class BandwidthBench:
    """Copies of a ``mib`` MiB array split across threads; arrays allocated and touched once."""

    def __init__(self, mib: int = 128):
        import numpy as np

        self.np = np
        self.src = np.ones(mib * (1 << 20) // 8)
        self.dst = np.zeros_like(self.src)
        self.dst += 1.0  # touch every page before timing

    def __call__(self, threads: int, seconds: float = MICROBENCH_SECONDS) -> float:
        """Best copy bandwidth in GB/s (bytes read + written) with ``threads`` threads."""
        bounds = self.np.linspace(0, self.src.size, threads + 1).astype(int)
        parts = [slice(bounds[i], bounds[i + 1]) for i in range(threads)]

        def copy(i: int) -> None:
            self.np.copyto(self.dst[parts[i]], self.src[parts[i]])

        best, deadline = 0.0, time.perf_counter() + seconds
        while True:
            best = max(best, 2 * self.src.nbytes / _run_threads(threads, copy) / 1e9)
            if time.perf_counter() > deadline:
                return best


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: int | bytes | str) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: tuple[int, ...]) -> bytes:
    shape = b"".join(_field(1, _field(1, d)) for d in dims)  # TensorShapeProto.dim{dim_value}
    tensor_type = _field(1, elem_type) + _field(2, shape)  # TypeProto.Tensor{elem_type, shape}
    return _field(1, name) + _field(2, _field(1, tensor_type))  # ValueInfoProto{name, type{tensor_type}}


def matmul_model(op: str, a_type: int, b_type: int, y_type: int, n: int, m: int | None = None) -> bytes:
    """A serialized ONNX ModelProto with one ``op`` node: Y = A @ B, A m x n, B n x n (opset 13; m defaults to n)."""
    m = n if m is None else m
    node = _field(1, "A") + _field(1, "B") + _field(2, "Y") + _field(4, op)
    graph = (_field(1, node) + _field(2, "microbench") + _field(11, _value_info("A", a_type, (m, n)))
             + _field(11, _value_info("B", b_type, (n, n))) + _field(12, _value_info("Y", y_type, (m, n))))
    opset = _field(1, "") + _field(2, 13)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)


class GemmBench:
    """One m x n x n MatMul (fp32) or MatMulInteger (uint8 x int8) in onnxruntime; one session per thread count."""

    def __init__(self, kind: str, n: int = 1024, m: int | None = None):
        import numpy as np

        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", None) from exc
        self.m = n if m is None else m
        self.ort, self.kind, self.n, self.sessions = ort, kind, n, {}
        rng = np.random.default_rng(0)
        if kind == "int8":
            self.model = matmul_model("MatMulInteger", 2, 3, 6, n, self.m)
            self.feeds = {"A": rng.integers(0, 255, (self.m, n), dtype=np.uint8),
                          "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
        else:
            self.model = matmul_model("MatMul", 1, 1, 1, n, self.m)
            self.feeds = {"A": rng.random((self.m, n), dtype=np.float32), "B": rng.random((n, n), dtype=np.float32)}

    def __call__(self, threads: int, seconds: float = MICROBENCH_SECONDS) -> float:
        """Best throughput in GFLOP/s (fp32) or GOP/s (int8) with ``threads`` intra-op threads."""
        sess = self.sessions.get(threads)
        if sess is None:
            opts = self.ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            sess = self.sessions[threads] = self.ort.InferenceSession(self.model, opts, providers=["CPUExecutionProvider"])
            sess.run(None, self.feeds)
        best, deadline = 0.0, time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            sess.run(None, self.feeds)
            best = max(best, 2 * self.m * self.n**2 / (time.perf_counter() - t0) / 1e9)
            if time.perf_counter() > deadline:
                return best


def measure(threads_list: list[int], progress=None, rounds: int = 3) -> tuple[dict[str, dict[int, float]], float]:
    """Every microbenchmark at each thread count; return ({bench: {threads: best value}}, cpu-wait fraction).

    The budget of each (benchmark, thread count) is split over ``rounds`` rounds that alternate the
    thread counts, and the best value is kept: a burst of other work on a shared machine then rarely
    covers every window of one configuration.
    """
    out: dict[str, dict[int, float]] = {"bandwidth": {}, "fp32": {}, "int8": {}}
    benches = (("bandwidth", BandwidthBench()), ("fp32", GemmBench("fp32")), ("int8", GemmBench("int8")))
    wait0 = cpu_wait_seconds()
    busy = 0.0
    for _ in range(rounds):
        for name, fn in benches:
            for t in threads_list:
                s = time.perf_counter()
                out[name][t] = max(out[name].get(t, 0.0), fn(t, MICROBENCH_SECONDS / rounds))
                busy += (time.perf_counter() - s) * t
                if progress is not None:
                    progress.advance()
    wait1 = cpu_wait_seconds()
    waited = (wait1 - wait0) / busy if wait0 is not None and wait1 is not None and busy > 0 else 0.0
    return out, max(0.0, waited)


def detect(name: str = "host", progress=None) -> TargetProfile:
    """The host as a :class:`TargetProfile`: read facts, then measure bandwidth and compute (about 3 s)."""
    from edgekit.progress import ensure

    facts = host_facts()
    cpus = facts["cpus"]
    counts = sorted({1, cpus})
    with ensure(progress).step("measuring host bandwidth and compute", total=9 * len(counts)) as step:
        m, waited = measure(counts, step)
    when = today()
    how = f"measured by edgekit targets detect on {when}"
    contention = f"; threads waited {waited:.0%} of the time for a CPU (shared host)" if waited > 0.05 else ""
    bw = lambda t: Sourced(value=round(m["bandwidth"][t], 2), source=f"{how}: numpy copy of 128 MiB with {t} thread(s), "
                           f"bytes read + written{contention}")
    fp = lambda t: Sourced(value=round(m["fp32"][t], 1), source=f"{how}: onnxruntime MatMul 1024^3 fp32, {t} thread(s){contention}")
    i8 = lambda t: Sourced(value=round(m["int8"][t], 1), source=f"{how}: onnxruntime MatMulInteger 1024^3 u8 x s8, "
                           f"{t} thread(s){contention}")
    profile = {
        "name": name, "description": f"this machine ({facts['hostname']})", "arch": facts["arch"], "os": facts["os"],
        "soc": facts["soc"], "clusters": [c.model_dump() for c in facts["clusters"]], "threads": cpus,
        "isa": facts["isa"],
        "ram_gb": {"value": round(facts["ram_gb"], 2), "source": f"{how}: MemTotal (or the cgroup limit)"},
        "app_ram_budget_gb": {"value": round(0.8 * facts["available_gb"], 2),
                              "source": f"{how}: 80% of MemAvailable (or of the cgroup limit) at detection"},
        "memory_bandwidth_gbs": bw(cpus).model_dump(), "single_thread_bandwidth_gbs": bw(1).model_dump(),
        "peak_gflops_fp32": fp(cpus).model_dump(), "single_thread_gflops_fp32": fp(1).model_dump(),
        "peak_gops_int8": i8(cpus).model_dump(), "single_thread_gops_int8": i8(1).model_dump(),
        "notes": f"cpu wait during microbenchmarks: {waited:.1%}", "measured_at": when,
        "measurement_cpu_wait": round(waited, 4),
    }
    return parse_profile(profile, "detected host profile")


def _cache_path() -> Path:
    from edgekit.manifest import cache_dir

    return cache_dir() / "host-profile.json"


def host_profile(max_age_s: float = 900.0, progress=None) -> TargetProfile:
    """The detected host profile, cached for ``max_age_s``.

    A profile measured while other processes kept the CPUs busy (threads waited more than 10% of the time)
    understates the host, and a calibration against it overstates every target: such a profile is measured
    once more right away (the quieter one is kept) and is reused for one minute only.
    """
    path = _cache_path()
    key = f"{socket.gethostname()}:{platform.machine()}:{usable_cpus()}"
    try:
        cached = json.loads(path.read_text())
        profile = parse_profile(cached["profile"], str(path))
        age = time.time() - cached.get("time", 0)
        busy = (profile.measurement_cpu_wait or 0.0) > 0.10
        if cached.get("key") == key and age < (60.0 if busy else max_age_s):
            return profile
    except (OSError, ValueError, KeyError, TypeError, ConfigError):  # missing or stale: measure again
        pass
    profile = detect(progress=progress)
    if (profile.measurement_cpu_wait or 0.0) > 0.10:
        again = detect(progress=progress)
        if (again.measurement_cpu_wait or 0.0) < (profile.measurement_cpu_wait or 0.0):
            profile = again
    try:
        from edgekit.manifest import write_json_atomic

        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "time": time.time(), "profile": profile.model_dump(mode="json")})
    except OSError:
        pass
    return profile
