"""How many CPU threads a runtime may use: the one check every backend, the CLI and the profiler share.

Both backends run one compute thread per requested thread and make them meet at
barriers after every operation, so threads beyond the CPUs this process may run
on only wait for each other: on a 2-CPU machine 8 threads decode several times
slower than 2, ``threads=4096`` took minutes for two tokens, and
``threads=100000`` made llama.cpp abort the whole process (``std::bad_alloc``)
instead of raising. So a count above the CPUs warns, and one no machine could
use (more than :data:`OVERSUBSCRIBE` times the CPUs, or above :data:`MAX_THREADS`)
is refused with a :class:`ConfigError` before any backend sees it.
"""

from __future__ import annotations

import logging
import os

from edgekit.errors import ConfigError, is_int

log = logging.getLogger("edgekit.runtimes")

MAX_THREADS = 1024  # more than any CPU machine this runs on has; llama.cpp's own limit is 512 per pool
OVERSUBSCRIBE = 4  # up to 4x the CPUs is allowed (with a warning): hyperthreads, a later CPU hot-plug


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads, *, param: str = "threads", warn: bool = True) -> int | None:
    """``threads`` checked against this machine: None (the backend's default) or an int in [1, the limit].

    Raises :class:`ConfigError` naming ``param`` for a non-integer, 0, a negative count or
    more than ``min(OVERSUBSCRIBE * CPUs, MAX_THREADS)``; logs a warning (``edgekit.runtimes``)
    when it is more than the CPUs this process may use, unless ``warn`` is false.
    """
    if threads is None:
        return None
    cpus = available_cpus()
    limit = min(OVERSUBSCRIBE * cpus, MAX_THREADS)
    if not is_int(threads, 1):
        raise ConfigError(f"{param} must be an integer >= 1 (at most {limit} here), got {threads!r}", param=param)
    if threads > limit:
        raise ConfigError(
            f"{param} {threads} is more than this machine can use: {cpus} CPU(s) are available to this process, "
            f"so pass at most {limit} (usually {cpus} or fewer is fastest)", param=param,
        )
    if threads > cpus and warn:
        log.warning("%s %d is more than the %d CPU(s) available to this process: the extra threads only wait for "
                    "each other and make generation slower; pass %d or fewer", param, threads, cpus, cpus)
    return threads


__all__ = ["available_cpus", "check_threads", "MAX_THREADS", "OVERSUBSCRIBE"]
