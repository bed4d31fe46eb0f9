"""Brunel (2000) model A: bionn vs Brian2 (cython and C++ standalone), rates side by side.

The network of :func:`bionn.spiking.networks.brunel` and its Brian2 twin
(:func:`bionn.spiking.brian2_reference.brian2_brunel`): 4,000 E + 1,000 I LIF cells,
fixed in-degrees C_E = 400, C_I = 100, voltage jumps J = 0.1 mV and -g J after 1.5 ms,
400 external Poisson sources of eta * nu_thr per neuron (bionn ``PoissonInput``, Brian2
``PoissonInput``), dt 0.1 ms, 300 ms.

Each run in its own single-threaded process (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``), network construction excluded:

* ``timing`` (g = 5, eta = 2): bionn's torch path and its compiled step (``backend="cpp"``,
  the same spikes; its trace and compile from an empty cache folder reported apart as
  ``bionn_cpp_compile_s``, excluded by a 1 ms warm-up run); Brian2 cython (code generation and compilation
  excluded by a 1 ms warm-up run); Brian2 C++ standalone on one thread (the run time its
  generated program measures, compilation reported separately as ``compile_s``).
* ``regimes``: the mean E and I rates after 100 ms and the mean ISI CV of the E cells,
  bionn and Brian2 cython, at (g, eta) = (3, 2), (5, 2), (6, 4).

The last stdout line is one JSON object. ``--quick``: 30 ms runs, one regime.
Run: ``python benchmarks/brunel.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import have_module, spawn_worker  # noqa: E402

T_START = 100.0  # ms skipped by the rates


def _stats(times_e: np.ndarray, idx_e: np.ndarray, times_i: np.ndarray, duration: float) -> dict:
    t0 = min(T_START, 0.5 * duration)
    late = times_e >= t0
    span = (duration - t0) / 1000.0
    order = np.lexsort((times_e[late], idx_e[late]))
    t, n = times_e[late][order], idx_e[late][order]
    cvs = []
    for i in np.unique(n):
        isi = np.diff(t[n == i])
        if len(isi) >= 3:
            cvs.append(isi.std() / isi.mean())
    return {"rate_e_hz": float(late.sum() / (4000 * span)),
            "rate_i_hz": float((times_i >= t0).sum() / (1000 * span)),
            "isi_cv_e": float(np.mean(cvs)) if cvs else None}


def bionn_worker(g: float, eta: float, duration: float, seed: int, backend: str = "torch") -> dict:
    import os

    import torch

    from bionn.spiking import brunel

    os.environ["BIONN_CACHE_DIR"] = tempfile.mkdtemp(prefix="bionn_cache_")  # compile from scratch
    torch.set_num_threads(1)
    net = brunel(g=g, eta=eta, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    net.run(1.0, dt=0.1, progress=False, seed=seed, record_spikes=["E", "I"],
            backend=backend)  # warm-up (allocator, caches; the compiled step's build)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = net.run(duration, dt=0.1, progress=False, seed=seed, record_spikes=["E", "I"],
                  backend=backend)
    wall = time.perf_counter() - t0
    e, i = res.spikes["E"], res.spikes["I"]
    return {"wall_s": wall, "warmup_s": warm, "spikes": e.count() + i.count(), **_stats(e.times.numpy(), e.neuron.numpy(), i.times.numpy(), duration)}


def brian2_worker(g: float, eta: float, duration: float, target: str, seed: int) -> dict:
    import brian2 as b2
    from brian2 import ms

    from bionn.spiking.brian2_reference import brian2_brunel

    if target == "cpp_standalone":
        folder = tempfile.mkdtemp(prefix="brunel_standalone_")
        b2.set_device("cpp_standalone", directory=folder, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        net, _, _, mon_e, mon_i = brian2_brunel(g=g, eta=eta, seed=seed, target="numpy")
        net.run(duration * ms)
        t0 = time.perf_counter()
        b2.device.build(directory=folder, compile=True, run=True, debug=False)
        total = time.perf_counter() - t0
        wall = float(b2.device._last_run_time)
        extra = {"compile_s": total - wall}
        offset = 0.0
    else:
        net, _, _, mon_e, mon_i = brian2_brunel(g=g, eta=eta, seed=seed, target=target)
        net.run(1 * ms)  # code generation + compilation
        t0 = time.perf_counter()
        net.run(duration * ms)
        wall = time.perf_counter() - t0
        extra, offset = {}, 1.0
    t_e, t_i = np.asarray(mon_e.t / ms) - offset, np.asarray(mon_i.t / ms) - offset
    keep_e, keep_i = t_e >= 0, t_i >= 0
    return {"wall_s": wall, **extra,
            **_stats(t_e[keep_e], np.asarray(mon_e.i)[keep_e], t_i[keep_i], duration)}


def spawn(args: list[str]) -> dict | None:
    return spawn_worker(__file__, args)


def _r(x: float | None, k: int = 3) -> float | None:
    return None if x is None else round(x, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 ms runs, one regime (smoke test)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, g, eta, duration, *rest = args.worker
        if kind == "bionn":
            result = bionn_worker(float(g), float(eta), float(duration), int(rest[0]), *rest[1:])
        else:
            result = brian2_worker(float(g), float(eta), float(duration), rest[0], int(rest[1]))
        print(json.dumps(result))
        return
    duration = 30.0 if args.quick else 300.0
    brian = have_module("brian2")
    if not brian:
        print("Brian2 is not installed (pip install brian2): its columns are null", file=sys.stderr)
    seed = str(args.seed)
    ours = spawn(["bionn", "5", "2", str(duration), seed])
    fast = spawn(["bionn", "5", "2", str(duration), seed, "cpp"])
    cython = spawn(["brian2", "5", "2", str(duration), "cython", seed]) if brian else None
    standalone = spawn(["brian2", "5", "2", str(duration), "cpp_standalone", seed]) if brian else None
    timing = {
        "bionn_s": _r(ours and ours["wall_s"]),
        "bionn_cpp_s": _r(fast and fast["wall_s"]),
        "bionn_cpp_compile_s": _r(fast and fast["warmup_s"]),
        "bionn_cpp_same_spike_count": bool(ours and fast and ours["spikes"] == fast["spikes"]),
        "brian2_cython_s": _r(cython and cython["wall_s"]),
        "brian2_cpp_standalone_s": _r(standalone and standalone["wall_s"]),
        "brian2_cpp_standalone_compile_s": _r(standalone and standalone["compile_s"]),
    }
    for ours_key, tag in (("bionn_s", ""), ("bionn_cpp_s", "cpp_")):
        for name in ("cython", "cpp_standalone"):
            theirs = timing[f"brian2_{name}_s"]
            timing[f"{tag}speed_vs_brian2_{name}"] = (_r(theirs / timing[ours_key])
                                                      if theirs and timing[ours_key] else None)
    timing["targets"] = {"cpp_at_least_2x_brian2_cython": None
                         if timing["cpp_speed_vs_brian2_cython"] is None
                         else timing["cpp_speed_vs_brian2_cython"] >= 2.0}
    regimes: dict = {}
    for g, eta in ([(5.0, 2.0)] if args.quick else [(3.0, 2.0), (5.0, 2.0), (6.0, 4.0)]):
        key = f"g{g:g}_eta{eta:g}"
        a = ours if (g, eta) == (5.0, 2.0) else spawn(["bionn", str(g), str(eta), str(duration), seed])
        b = cython if (g, eta) == (5.0, 2.0) else (
            spawn(["brian2", str(g), str(eta), str(duration), "cython", seed]) if brian else None)
        regimes[key] = {f"{who}_{k}": _r(r and r[k]) for who, r in (("bionn", a), ("brian2", b))
                        for k in ("rate_e_hz", "rate_i_hz", "isi_cv_e")}
        if a and b and b["rate_e_hz"]:
            regimes[key]["rate_e_rel_diff"] = _r(a["rate_e_hz"] / b["rate_e_hz"] - 1.0, 4)
    import torch

    summary = {"benchmark": "brunel", "timing": timing, "regimes": regimes, "duration_ms": duration,
               "threads": 1, "torch": torch.__version__, "quick": bool(args.quick),
               "notes": {"brian2_refractory": "Brian2 refractory = t_ref + dt (bionn holds V for "
                                              "t_ref / dt steps after the spike step)",
                         "timing": "one run each, construction excluded; a shared machine: +-20 %"}}
    print(f"bionn {timing['bionn_s']} s, bionn cpp {timing['bionn_cpp_s']} s, Brian2 cython {timing['brian2_cython_s']} s, "
          f"C++ standalone {timing['brian2_cpp_standalone_s']} s", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
