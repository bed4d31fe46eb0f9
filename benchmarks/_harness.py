"""Timing helpers shared by the benchmarks (imported as ``_harness``; not a benchmark)."""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (argparse reports anything else, exit 2)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def interleaved_times(fns: dict[str, Callable[[], object]], warmup: int,
                      rounds: int) -> dict[str, list[float]]:
    """Wall time (s) of every call of each function, one call of each per round:
    entry ``r`` of every list is round ``r``.

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
    return times


def medians_ms(times: dict[str, list[float]]) -> dict[str, float]:
    """Median (ms) of each list of wall times (s), e.g. from :func:`interleaved_times`."""
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def interleaved_medians(fns: dict[str, Callable[[], object]], warmup: int,
                        rounds: int) -> dict[str, float]:
    """Median wall time (ms) of each function over :func:`interleaved_times`."""
    return medians_ms(interleaved_times(fns, warmup, rounds))


def window_sums(times: list[float], window: int) -> list[float]:
    """Sums over consecutive, whole windows of ``window`` rounds (one sum of every round
    when there are fewer: a smoke run)."""
    if len(times) < window:
        return [sum(times)]
    return [sum(times[i:i + window]) for i in range(0, len(times) - window + 1, window)]


def paired_ratio(times: list[float], reference: list[float], window: int = 1) -> float:
    """Median over rounds of ``times[r] / reference[r]`` (lists from
    :func:`interleaved_times`); with ``window=k``, of the ratios of the two sums over
    each ``k`` consecutive rounds (a variant that does extra work on one call in ``k``,
    e.g. a draw kept for ``k`` steps, is compared over whole cycles).

    The project's machine is a shared virtual machine whose speed switches between
    periods lasting several rounds: in a one-off run of the credit-assignment LeNet
    steps, a step took either about 8.3 or about 14 ms, 40 % of them slow. Where the two
    medians fall in different periods their ratio is off by up to 20 % (plain autograd
    against itself: 1.08 in that run, 1.23 in a run of the benchmark); two calls of one
    round mostly share a period, so the median of the per-round ratios is steady (1.015
    there).
    """
    pairs = zip(window_sums(times, window), window_sums(reference, window), strict=True)
    return statistics.median(t / r for t, r in pairs)


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


#: the environment of a single-threaded benchmark worker process
SINGLE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "OPENBLAS_NUM_THREADS": "1"}


def spawn_worker(script: str, args: list[str], env: dict | None = None) -> dict | None:
    """Run ``python script --worker *args`` in a fresh single-threaded process; its last
    stdout line parsed as JSON, or None (the error's tail on stderr) when it fails."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, script, "--worker", *args], env=env or SINGLE_THREAD_ENV,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"worker {args} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def have_module(name: str) -> bool:
    """Whether an optional peer (``brian2``, ...) imports here."""
    try:
        __import__(name)
    except Exception:  # pragma: no cover - optional
        return False
    return True
