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
  intra-op thread count set. The one-node ONNX graphs are encoded as protobuf
  bytes by :mod:`edgekit.protobuf` (a few fields), so detection needs neither
  the ``onnx`` package nor torch;
* on x86 hosts with AVX-512, the fp32 rate at 256-bit vectors too (numpy's
  OpenBLAS held to its AVX2 kernels, ``OPENBLAS_CORETYPE=Haswell``, in a
  subprocess): llama.cpp's quantized kernels are AVX2-width code, so they are
  calibrated against that rate, and one core's speed is compared at that width
  (roofline.py). On this kind of host (a Zen 5 EPYC) it is 121 GFLOP/s per core
  against 229 at 512 bits.

Each value is the best of several passes, taken in rounds that alternate the
thread counts. One-thread passes are timed by the thread's CPU time: a pass that
waits for a CPU on a shared host does not read as a slower host.

The host is often shared: ``cpu_wait_seconds`` reads how long this process's
threads waited for a CPU (``/proc/self/task/*/schedstat``), and the profile notes
how contended the machine was while measuring.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError
from edgekit.fileio import cache_dir, parse_json, write_json_atomic
from edgekit.hostmem import meminfo
from edgekit.protobuf import FLOAT, INT8, INT32, UINT8, matmul_model
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
    """(total, available) RAM in GB, honouring a cgroup memory limit (:func:`edgekit.hostmem.meminfo`)."""
    total, avail = meminfo()
    total = total or 1
    return total / 1e9, (avail if avail is not None else total) / 1e9


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

def _thread_wait() -> float | None:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _timed(fn) -> float:
    """Seconds ``fn()`` takes on this thread: its CPU time, so that waiting for a CPU does not count. Where the
    thread's CPU time and waiting do not add up to the wall clock (the work ran on other threads, or the kernel
    does not say), the wall clock."""
    q0, c0, w0 = _thread_wait(), time.thread_time(), time.perf_counter()
    fn()
    cpu, wall, q1 = time.thread_time() - c0, time.perf_counter() - w0, _thread_wait()
    waited = q1 - q0 if q0 is not None and q1 is not None else None
    if cpu > 0 and waited is not None and cpu + waited >= 0.8 * wall:
        return cpu
    return wall


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
            seconds_taken = _timed(lambda: copy(0)) if threads == 1 else _run_threads(threads, copy)
            best = max(best, 2 * self.src.nbytes / seconds_taken / 1e9)
            if time.perf_counter() > deadline:
                return best


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
            self.model = matmul_model("MatMulInteger", UINT8, INT8, INT32, n, self.m)
            self.feeds = {"A": rng.integers(0, 255, (self.m, n), dtype=np.uint8),
                          "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}
        else:
            self.model = matmul_model("MatMul", FLOAT, FLOAT, FLOAT, n, self.m)
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
            if threads == 1:  # one intra-op thread: onnxruntime computes on this thread
                dt = _timed(lambda: sess.run(None, self.feeds))
            else:
                t0 = time.perf_counter()
                sess.run(None, self.feeds)
                dt = time.perf_counter() - t0
            best = max(best, 2 * self.m * self.n**2 / dt / 1e9)
            if time.perf_counter() > deadline:
                return best


# fp32 GFLOP/s of numpy's OpenBLAS held to its AVX2 (256-bit) kernels; prints 0 where numpy's BLAS is not OpenBLAS
_SIMD256 = r"""
import sys, time
import numpy as np
blas = str(np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {}).get("name", "")).lower()
if "openblas" not in blas:
    print(0.0)
    sys.exit()
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
b = a.copy()
a @ b
clock = time.thread_time if threads == 1 else time.perf_counter
best, deadline = 0.0, time.perf_counter() + seconds
while True:
    t0 = clock()
    a @ b
    dt = clock() - t0
    if dt > 0:
        best = max(best, 2 * 1024**3 / dt / 1e9)
    if time.perf_counter() > deadline:
        break
print(best)
"""


def has_wide_vectors(isa: list[str]) -> bool:
    """Whether the host's vectors are wider than 256 bits (x86 AVX-512)."""
    return "avx512f" in isa


def simd256_gflops(threads: int, seconds: float = MICROBENCH_SECONDS) -> float | None:
    """fp32 GFLOP/s at 256-bit vectors with ``threads`` threads (numpy's OpenBLAS, AVX2 kernels), or None."""
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": str(threads)}
    try:
        out = subprocess.run([sys.executable, "-c", _SIMD256, str(threads), str(seconds)], env=env, text=True,
                             capture_output=True, timeout=120)
        value = float(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return value if value > 0 else None


def measure(threads_list: list[int], progress=None, rounds: int = 3, wide_vectors: bool = False
            ) -> tuple[dict[str, dict[int, float]], float]:
    """Every microbenchmark at each thread count; return ({bench: {threads: best value}}, cpu-wait fraction).

    The budget of each (benchmark, thread count) is split over ``rounds`` rounds that alternate the
    thread counts, and the best value is kept: a burst of other work on a shared machine then rarely
    covers every window of one configuration. With ``wide_vectors`` (AVX-512), the 256-bit fp32 rate
    ("fp32_256") is measured too, in a subprocess per thread count.
    """
    out: dict[str, dict[int, float]] = {"bandwidth": {}, "fp32": {}, "int8": {}, "fp32_256": {}}
    if wide_vectors:
        for t in threads_list:
            value = simd256_gflops(t)
            if value is not None:
                out["fp32_256"][t] = value
            if progress is not None:
                progress.advance()
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
    """The host as a :class:`TargetProfile`: read facts, then measure bandwidth and compute (about 3-5 s)."""
    from edgekit.progress import ensure

    facts = host_facts()
    cpus = facts["cpus"]
    counts = sorted({1, cpus})
    wide = has_wide_vectors(facts["isa"])
    with ensure(progress).step("measuring host bandwidth and compute", total=(9 + wide) * len(counts)) as step:
        m, waited = measure(counts, step, wide_vectors=wide)
    for values in m.values():  # all threads can always do what one does: less is other processes' doing
        if 1 in values and cpus in values:
            values[cpus] = max(values[cpus], values[1])
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
    if all(t in m["fp32_256"] for t in counts):
        f256 = lambda t: Sourced(value=round(m["fp32_256"][t], 1), source=f"{how}: numpy (OpenBLAS, AVX2 kernels: "
                                 f"OPENBLAS_CORETYPE=Haswell) sgemm 1024^3 fp32, {t} thread(s){contention}")
        profile["peak_gflops_fp32_256"] = f256(cpus).model_dump()
        profile["single_thread_gflops_fp32_256"] = f256(1).model_dump()
    return parse_profile(profile, "detected host profile")


def _cache_path() -> Path:
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
        cached = parse_json(path.read_bytes())
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
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "time": time.time(), "profile": profile.model_dump(mode="json")})
    except OSError:
        pass
    return profile
