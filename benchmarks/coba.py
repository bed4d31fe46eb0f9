"""COBA network (Brette et al. 2007): bionn vs Brian2 (numpy, cython and C++ standalone).

Same model on both sides: LIF, tau_m = 20 ms, E_L = V_r = -60 mV, V_t = -50 mV,
I = 20 mV, exponential conductances (tau_e = 5, tau_i = 10 ms; we = 0.6,
wi = 6.7; E_e = 0, E_i = -80 mV), 5 ms refractory, 80 % E, 80 synapses per
neuron on average (p = 80 / N), exponential Euler at dt = 0.1 ms, V(0) ~
N(-55, 5^2).

Runs, each in its own single-threaded process (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``), network construction and code generation and compilation
excluded (bionn and Brian2's runtime targets are warmed up with a 1 ms run first; Brian2's
C++ standalone reports the run time of its binary, one thread). bionn runs twice: the torch
path (``backend="torch"``) and the compiled step (``backend="cpp"``, same spikes); its
trace-and-compile time is reported apart (``bionn_cpp_compile_s``, a fresh cache folder).

* ``coba_4k``: 4,000 neurons for 1 s of biological time;
* ``coba_40k``: 40,000 neurons for 0.2 s;
* ``batch16_4k``: bionn only (compiled step), 16 independent 4,000-neuron networks at once
  (batch dimension), reported as simulated seconds per wall second (all 16
  trials together count as 16 simulated seconds per simulated second);
* ``peak_rss_mb``: the largest resident memory of a bionn worker.

The last stdout line is one JSON object. ``--quick`` shortens every run 5x.
Run: ``python benchmarks/coba.py``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import have_module, spawn_worker  # noqa: E402


def bionn_worker(n: int, duration: float, batch: int, seed: int, backend: str = "torch") -> dict:
    import os
    import tempfile

    import torch

    os.environ["BIONN_CACHE_DIR"] = tempfile.mkdtemp(prefix="bionn_cache_")  # compile from scratch

    from bionn.spiking.networks import coba

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    net = coba(n, generator=gen)
    t0 = time.perf_counter()
    net.run(1.0, dt=0.1, batch=batch, progress=False, seed=seed, backend=backend)  # warm-up
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = net.run(duration, dt=0.1, batch=batch, progress=False, seed=seed, backend=backend)
    wall = time.perf_counter() - t0
    rate = res.spikes["P"].count() / (n * batch * duration / 1000.0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"wall_s": wall, "rate_hz": rate, "peak_rss_mb": rss, "warmup_s": warm,
            "spikes": res.spikes["P"].count()}


def brian2_worker(n: int, duration: float, target: str, seed: int) -> dict:
    from brian2 import ms, second

    from bionn.spiking.brian2_reference import brian2_coba

    if target == "cpp_standalone":
        import tempfile

        import brian2 as b2

        folder = tempfile.mkdtemp(prefix="coba_standalone_")
        b2.set_device("cpp_standalone", directory=folder, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        net, _, mon = brian2_coba(n, target="numpy", seed=seed)
        net.run(duration / 1000.0 * second)
        t0 = time.perf_counter()
        b2.device.build(directory=folder, compile=True, run=True, debug=False)
        total = time.perf_counter() - t0
        wall = float(b2.device._last_run_time)
        rate = mon.num_spikes / (n * duration / 1000.0)
        return {"wall_s": wall, "rate_hz": float(rate), "compile_s": total - wall}
    net, _, mon = brian2_coba(n, target=target, seed=seed)
    net.run(1 * ms)  # code generation + compilation
    before = mon.num_spikes
    t0 = time.perf_counter()
    net.run(duration / 1000.0 * second)
    wall = time.perf_counter() - t0
    rate = (mon.num_spikes - before) / (n * duration / 1000.0)
    return {"wall_s": wall, "rate_hz": float(rate)}


def spawn(args: list[str]) -> dict | None:
    return spawn_worker(__file__, args)


def compare(n: int, duration: float, seed: int, brian: bool) -> dict:
    ours = spawn(["bionn", str(n), str(duration), "1", str(seed), "torch"])
    fast = spawn(["bionn", str(n), str(duration), "1", str(seed), "cpp"])
    out = {"bionn_s": ours and ours["wall_s"], "bionn_rate_hz": ours and ours["rate_hz"],
           "bionn_cpp_s": fast and fast["wall_s"],
           "bionn_cpp_compile_s": fast and fast["warmup_s"],
           "bionn_cpp_same_spike_count": bool(ours and fast and ours["spikes"] == fast["spikes"]),
           "brian2_numpy_s": None, "brian2_cython_s": None, "brian2_cpp_standalone_s": None,
           "brian2_rate_hz": None}
    if brian:
        numpy_run = spawn(["brian2", str(n), str(duration), "numpy", str(seed)])
        cython_run = spawn(["brian2", str(n), str(duration), "cython", str(seed)])
        standalone = spawn(["brian2", str(n), str(duration), "cpp_standalone", str(seed)])
        out["brian2_numpy_s"] = numpy_run and numpy_run["wall_s"]
        out["brian2_cython_s"] = cython_run and cython_run["wall_s"]
        out["brian2_cpp_standalone_s"] = standalone and standalone["wall_s"]
        out["brian2_cpp_standalone_compile_s"] = standalone and standalone["compile_s"]
        out["brian2_rate_hz"] = (cython_run or numpy_run or {}).get("rate_hz")
    for ours_key, tag in (("bionn_s", ""), ("bionn_cpp_s", "cpp_")):
        for peer in ("numpy", "cython", "cpp_standalone"):
            if out[ours_key] and out[f"brian2_{peer}_s"]:
                out[f"{tag}speedup_vs_brian2_{peer}"] = out[f"brian2_{peer}_s"] / out[ours_key]
    if out.get("cpp_speedup_vs_brian2_cython") is not None:
        out["targets"] = {
            "cpp_at_least_2x_brian2_cython": out["cpp_speedup_vs_brian2_cython"] >= 2.0,
            "cpp_at_least_1x_brian2_cpp_standalone":
                (out.get("cpp_speedup_vs_brian2_cpp_standalone") or 0.0) >= 1.0}
    out["peak_rss_mb"] = ours and ours["peak_rss_mb"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5x shorter runs (smoke test)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, n, duration, extra, seed, *rest = args.worker
        if kind == "bionn":
            result = bionn_worker(int(n), float(duration), int(extra), int(seed), *rest)
        else:
            result = brian2_worker(int(n), float(duration), extra, int(seed))
        print(json.dumps(result))
        return
    scale = 0.2 if args.quick else 1.0
    brian = have_module("brian2")
    if not brian:
        print("Brian2 is not installed (pip install brian2): its columns are null", file=sys.stderr)
    summary: dict = {}
    summary["coba_4k"] = compare(4000, 1000.0 * scale, args.seed, brian)
    summary["coba_40k"] = compare(40000, 200.0 * scale, args.seed, brian)
    duration = 1000.0 * scale
    batch = spawn(["bionn", "4000", str(duration), "16", str(args.seed), "cpp"])
    summary["batch16_4k"] = {
        "sim_s_per_wall_s": batch and 16 * duration / 1000.0 / batch["wall_s"],
        "rate_hz": batch and batch["rate_hz"],
    }
    if summary["coba_4k"]["bionn_cpp_s"] and batch:
        summary["batch16_4k"]["vs_single_4k"] = (
            summary["batch16_4k"]["sim_s_per_wall_s"] * summary["coba_4k"]["bionn_cpp_s"] / (duration / 1000.0))
    rss = [r.get("peak_rss_mb") for r in (summary["coba_4k"], summary["coba_40k"]) if r.get("peak_rss_mb")]
    rss.append(batch and batch["peak_rss_mb"])
    summary["peak_rss_mb"] = max(r for r in rss if r) if any(rss) else None
    import torch

    summary["threads"] = 1
    summary["torch"] = torch.__version__
    print(f"{'run':<10} {'bionn s':>9} {'bionn cpp s':>12} {'b2 numpy s':>11} {'b2 cython s':>12} "
          f"{'b2 C++ s':>9} {'bionn Hz':>9} {'b2 Hz':>7}")
    for key in ("coba_4k", "coba_40k"):
        r = summary[key]
        print(f"{key:<10} {_f(r['bionn_s']):>9} {_f(r['bionn_cpp_s']):>12} {_f(r['brian2_numpy_s']):>11} "
              f"{_f(r['brian2_cython_s']):>12} {_f(r['brian2_cpp_standalone_s']):>9} "
              f"{_f(r['bionn_rate_hz']):>9} {_f(r['brian2_rate_hz']):>7}")
    print(f"batch16_4k: {_f(summary['batch16_4k']['sim_s_per_wall_s'])} simulated s per wall s")
    print(json.dumps(summary))


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
