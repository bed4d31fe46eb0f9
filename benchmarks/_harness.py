"""Timing helpers shared by the benchmarks (imported as ``_harness``; not a benchmark)."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: dict[str, Callable[[], object]], warmup: int,
                        rounds: int) -> dict[str, float]:
    """Median wall time (ms) of each function; one call of each per round.

    The order within a round is shuffled (fixed seed), so that no variant always
    runs right after the same neighbour (allocator and cache state), and slow drifts
    of the machine's load hit every variant alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def package_version(distribution: str, importable: bool = True) -> str | None:
    """The installed version of ``distribution`` (None when ``importable`` is false)."""
    if not importable:
        return None
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:  # pragma: no cover - depends on the environment
        return "unknown"


def all_threads() -> int:
    """The CPU cores this process may run on (the "all threads" setting of a benchmark)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def rss_now_mb() -> float:
    """This process's resident set size now (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def vm_hwm_mb() -> float | None:
    """Peak resident size of this process's memory map (VmHWM, MB), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
