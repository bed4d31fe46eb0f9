"""Understand and fit: fixed-point search and FORCE fitting, wall time and growth with N.

Float64 (what both routines compute in) on the CPU, one call per measurement (each is seconds
to minutes long: no interleaved rounds), once on one thread and once on all threads
(``torch.set_num_threads``) for the two main cases, single thread for the scaling.

Cases:

* ``fixed_points_256``: ``bionn.analysis.find_fixed_points`` on a
  ``bionn.CTRNN(3, 256, 3, activation="tanh", dt=10, tau=100, bias=False)`` from 1,024
  initial states ``h0 ~ N(0, 2^2)`` (seeded), constant input zero. Recurrent weights: a
  Hopfield-like rank-4 symmetric part ``(2 / N) sum_k xi_k xi_k^T`` (``xi_k`` random +-1
  patterns, gain 2) plus a weak random part ``N(0, 0.3^2 / N)`` (seeded), so that the network
  has many fixed points (the pattern attractors, their mixtures, saddles, the origin) rather
  than the single origin a chaotic random network with spectral radius 1.5 gave (1 point
  after 314 s from 1,024 starts). The starts lie on the network's own trajectories, as
  Golub & Sussillo sample them: from ``h ~ N(0, 2^2)`` the network runs its zero-input
  dynamics for a random 0..39 steps (seeded). (Starts drawn at random, off the
  trajectories, all descend q to the origin and a second saddle: 2 points from 256 starts.)
  Search settings: the defaults (2,000 Adam iterations, 30 Newton steps). Reported: wall
  time, ``points_found`` and the stable / saddle / unstable counts.
* ``force_500``: ``fit(ForceNetwork(1, 500, dt=1, tau=10, g=1.5), recording, units=0..99,
  method="force", steps=5, initial_state="data")``: FORCE (RLS on the 100 target units'
  rows of ``[J | W_in]``) for 5 passes over one trial of 1,000 steps (dt 1 ms). The
  recording is 100 smooth synthetic units: each the sum of three sines (frequencies 1-6 Hz,
  random phases and amplitudes, seeded), scaled to peak 0.8. Reported: wall time of ``fit``
  (RLS passes + the free-running prediction) and its training pVar.
* ``scaling``: both workloads at N = 128, 256, 512, 1024, one thread, seconds per case.
  Fixed points: N units, the same weights and starts recipe, the default settings, but 64
  initial states (not 1,024) at every N (the Jacobians and Newton solves cost about
  K N^3: at N = 1024 with 1,024 starts one search would take far more than the run's
  budget). FORCE: N network units, 100 recorded, 1,000 steps, 2 passes
  (not 5) at every N.

JSON (last stdout line): ``benchmark``; ``fixed_points_256`` and ``force_500`` with
``threads_1_s``, ``threads_all_s`` and their results (``points_found``, ``counts``;
``pvar_train``, ``mse_last_pass``); ``scaling`` ``{"fixed_points": {N: s}, "force": {N: s},
"fixed_points_found": {N: n}, "force_pvar": {N: pvar}}``; ``threads_all_count``, ``config``,
``versions``, ``notes``. Run: ``python benchmarks/analysis.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import all_threads, package_version  # noqa: E402
from bionn import CTRNN  # noqa: E402
from bionn.analysis.fitting import ForceNetwork, Recording, fit  # noqa: E402
from bionn.analysis.fixed_points import find_fixed_points, step_map  # noqa: E402

FULL = {
    "fixed_points": {"n": 256, "starts": 1024, "max_iters": 2000, "newton_steps": 30},
    "force": {"n": 500, "recorded": 100, "steps": 1000, "passes": 5},
    "scaling": {"sizes": [128, 256, 512, 1024], "fp_starts": 64, "fp_max_iters": 2000,
                "fp_newton_steps": 30, "force_recorded": 100, "force_steps": 1000, "force_passes": 2},
}
QUICK = {
    "fixed_points": {"n": 16, "starts": 32, "max_iters": 20, "newton_steps": 2},
    "force": {"n": 40, "recorded": 10, "steps": 50, "passes": 2},
    "scaling": {"sizes": [16, 32], "fp_starts": 8, "fp_max_iters": 10, "fp_newton_steps": 1,
                "force_recorded": 10, "force_steps": 30, "force_passes": 1},
}
TRAJECTORY_STEPS = 40  # starts: h0 ~ N(0, INIT_STD^2) run for a random 0..39 steps
PATTERNS = 4  # rank of the symmetric (Hopfield-like) part of the recurrent weights
PATTERN_GAIN = 2.0
RANDOM_GAIN = 0.3
INIT_STD = 2.0


# ----------------------------------------------------------------------- workloads
def fixed_point_net(n: int, seed: int = 0) -> CTRNN:
    """A tanh CTRNN with many fixed points: ``(2/N) sum_k xi_k xi_k^T + N(0, 0.3^2/N)``."""
    g = torch.Generator().manual_seed(seed)
    net = CTRNN(3, n, 3, activation="tanh", dt=10.0, tau=100.0, weight_init="normal", bias=False,
                generator=g)
    xi = torch.sign(torch.randn(PATTERNS, n, generator=g))
    rand = torch.randn(n, n, generator=g) * (RANDOM_GAIN / math.sqrt(n))
    with torch.no_grad():
        net.weight_rec.copy_(PATTERN_GAIN / n * xi.T @ xi + rand)
    return net


def trajectory_starts(net: CTRNN, starts: int, g: torch.Generator) -> torch.Tensor:
    """``starts`` states on the network's zero-input trajectories: from ``h ~ N(0, 2^2)``,
    each run for a random 0..39 steps."""
    F = step_map(net, torch.zeros(net.n_input))
    h = INIT_STD * torch.randn(starts, net.n_hidden, generator=g)
    stop = torch.randint(0, TRAJECTORY_STEPS, (starts,), generator=g)
    out = h.clone()
    with torch.no_grad():
        for t in range(1, TRAJECTORY_STEPS):
            h = F(h)
            out[stop == t] = h[stop == t]
    return out


def run_fixed_points(n: int, starts: int, max_iters: int, newton_steps: int, seed: int = 0) -> dict:
    """One search, timed: ``{"s", "points_found", "counts"}``."""
    net = fixed_point_net(n, seed)
    h0 = trajectory_starts(net, starts, torch.Generator().manual_seed(seed + 1))
    t0 = time.perf_counter()
    fps = find_fixed_points(net, initial_states=h0, max_iters=max_iters, newton_steps=newton_steps,
                            progress=False)
    s = time.perf_counter() - t0
    return {"s": round(s, 3), "points_found": len(fps), "counts": fps.counts()}


def synthetic_recording(units: int, steps: int, seed: int = 0) -> Recording:
    """One trial of ``units`` smooth rates: sums of three sines (1-6 Hz), peak 0.8; dt 1 ms."""
    g = torch.Generator().manual_seed(seed + 2)
    t = torch.arange(steps, dtype=torch.float64)[:, None, None] * 1e-3  # s
    freq = 1.0 + 5.0 * torch.rand(1, units, 3, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(1, units, 3, generator=g, dtype=torch.float64)
    amp = 0.5 + torch.rand(1, units, 3, generator=g, dtype=torch.float64)
    y = (amp * torch.sin(2 * math.pi * freq * t + phase)).sum(-1)  # (steps, units)
    y = 0.8 * y / y.abs().amax(0, keepdim=True)
    return Recording(y[None].float(), dt=1.0)


def run_force(n: int, recorded: int, steps: int, passes: int, seed: int = 0) -> dict:
    """One FORCE fit, timed: ``{"s", "pvar_train", "mse_last_pass"}``."""
    rec = synthetic_recording(recorded, steps, seed)
    net = ForceNetwork(1, n, dt=1.0, tau=10.0, g=1.5, generator=torch.Generator().manual_seed(seed))
    t0 = time.perf_counter()
    res = fit(net, rec, units=range(recorded), method="force", steps=passes, initial_state="data")
    s = time.perf_counter() - t0
    return {"s": round(s, 3), "pvar_train": round(float(res.pvar_train), 4),
            "mse_last_pass": float(f"{res.curve[-1]:.4g}")}


NOTES = {
    "dtype": "float64 (find_fixed_points and RLS compute in float64), CPU",
    "fixed_points_net": "CTRNN(3, N, 3, tanh, dt 10 ms, tau 100 ms, no bias); W_rec = (2/N) sum_k xi_k xi_k^T "
                        "(4 random +-1 patterns) + N(0, 0.3^2/N); input zero; starts on the network's "
                        "trajectories: h ~ N(0, 2^2) run for a random 0..39 steps, seeded",
    "fixed_points_settings": "the defaults: max_iters=2000, newton_steps=30, q_threshold=1e-16",
    "force_data": "100 synthetic units, one trial of 1000 steps (dt 1 ms): sum of 3 sines, 1-6 Hz, random "
                  "phase/amplitude, peak 0.8, seeded",
    "force_fit": "ForceNetwork(1, N, dt 1, tau 10, g 1.5), fit(method='force', initial_state='data'); "
                 "time = RLS passes + the free-running prediction; pvar_train on the one trial",
    "scaling": "one thread; fixed points: 64 starts (not 1024), default settings, at every N; "
               "FORCE: 100 recorded units, 1000 steps, 2 passes (not 5) at every N",
    "timing": "one call per measurement (no repeats): on a shared machine expect +-20 %",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few iterations (smoke run)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    fp, fo, sc = cfg["fixed_points"], cfg["force"], cfg["scaling"]
    old_threads = torch.get_num_threads()
    n_all = all_threads()
    result: dict = {"benchmark": "analysis"}
    fp_name, fo_name = f"fixed_points_{fp['n']}", f"force_{fo['n']}"
    try:
        fp_out: dict = {}
        fo_out: dict = {}
        for threads, key in ((1, "threads_1_s"), (n_all, "threads_all_s")):
            torch.set_num_threads(threads)
            r = run_fixed_points(fp["n"], fp["starts"], fp["max_iters"], fp["newton_steps"])
            fp_out[key] = r["s"]
            fp_out.update(points_found=r["points_found"], counts=r["counts"])
            print(f"{fp_name} threads={threads}: {r['s']:.2f} s, {r['points_found']} points {r['counts']}",
                  flush=True)
            r = run_force(fo["n"], fo["recorded"], fo["steps"], fo["passes"])
            fo_out[key] = r["s"]
            fo_out.update(pvar_train=r["pvar_train"], mse_last_pass=r["mse_last_pass"])
            print(f"{fo_name} threads={threads}: {r['s']:.2f} s, pVar {r['pvar_train']}", flush=True)
        fp_out.update(n=fp["n"], starts=fp["starts"], max_iters=fp["max_iters"],
                      newton_steps=fp["newton_steps"])
        fo_out.update(n=fo["n"], recorded=fo["recorded"], steps=fo["steps"], passes=fo["passes"])
        result[fp_name] = fp_out
        result[fo_name] = fo_out

        torch.set_num_threads(1)
        scaling: dict = {"fixed_points": {}, "force": {}, "fixed_points_found": {}, "force_pvar": {}}
        for n in sc["sizes"]:
            r = run_fixed_points(n, sc["fp_starts"], sc["fp_max_iters"], sc["fp_newton_steps"])
            scaling["fixed_points"][str(n)] = r["s"]
            scaling["fixed_points_found"][str(n)] = r["points_found"]
            q = run_force(n, sc["force_recorded"], sc["force_steps"], sc["force_passes"])
            scaling["force"][str(n)] = q["s"]
            scaling["force_pvar"][str(n)] = q["pvar_train"]
            print(f"scaling N={n}: fixed points {r['s']:.2f} s ({r['points_found']} points), "
                  f"FORCE {q['s']:.2f} s (pVar {q['pvar_train']})", flush=True)
        result["scaling"] = scaling
    finally:
        torch.set_num_threads(old_threads)
    result["threads"] = 1
    result["threads_all_count"] = n_all
    result["config"] = {**cfg, "quick": bool(args.quick)}
    result["versions"] = {"torch": torch.__version__, "bionn": package_version("bionn")}
    result["notes"] = dict(NOTES)
    if args.quick:
        result["notes"]["quick"] = "--quick: tiny sizes, the numbers mean nothing"
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
