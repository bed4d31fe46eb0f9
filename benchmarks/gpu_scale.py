"""Large networks on a GPU: COBA at 4k, 40k and 400k neurons, the SNN training pass at
16,384 neurons, the CTRNN training step at N 256 to 2048 and the connectome step at the fly
optic-lobe size and 10x, with the same code as on the CPU (``device=`` only).

* ``coba_<n>``: :func:`bionn.spiking.networks.coba` (exponential Euler, dt 0.1 ms) for
  1000 / 200 / 50 ms of biological time after a 5 ms warm-up; ``sim_s_per_wall_s`` =
  simulated seconds per wall second, ``rate_hz`` the mean rate (a sanity check: ~20 Hz),
  ``peak_gpu_mb`` = ``torch.cuda.max_memory_allocated``;
* ``snn_ff_16384``: the Open Neuromorphic shape of ``benchmarks/snn_train.py`` (``Linear(n,
  n)`` + LIF, batch 16, 500 steps, forward + backward) at n = 16,384 for bionn, snnTorch,
  Norse, SpikingJelly (those installed) and the floor (the ``Linear`` alone), the builders of
  ``snn_train.py``; ``<lib>_ms`` medians of interleaved rounds, ``<lib>_peak_gpu_mb`` over one
  pass, ``bionn_over_floor``; ``bionn_cuda_graph_ms``: bionn's pass captured once as a CUDA
  graph and replayed;
* ``ctrnn_<N>``: the training step of ``benchmarks/ctrnn_train.py`` (E/I CTRNN, batch 64,
  100 steps, Adam) against its matrix-product floor, per-round ratio ``ratio_vs_floor``;
  ``bionn_cuda_graph_ms``: the whole step (forward, loss, backward, ``Adam(capturable=True)``)
  captured as one CUDA graph;
* ``connectome_optic_lobe`` / ``connectome_optic_lobe_x10``: one recurrent step forward and
  backward (values and input gradients), batch 8, of :func:`bionn.sparse.spmm` against
  PyTorch's CSR ``sparse.mm`` with autograd and gather/scatter (the implementations of
  ``benchmarks/sparse_connectome.py``), median of repeats with ``torch.cuda.synchronize``;
  a method that runs out of memory is reported as ``null`` with the reason.

A variant that fails (out of memory, or an operation a CUDA graph cannot capture) is
reported as ``null`` with the reason under ``skipped``; the others go on. CUDA graphs need a
CUDA device: on the CPU they are ``null`` with that reason.

On a machine without CUDA it prints that it skipped and the JSON line
``{"device": null, "skipped": "..."}``. ``--device cpu --quick`` runs the same code on
small sizes on the CPU (the smoke test). The last stdout line is one JSON object.
Run: ``python benchmarks/gpu_scale.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctrnn_train  # noqa: E402
import snn_train  # noqa: E402
from _harness import interleaved_times, medians_ms, paired_ratio, positive_int  # noqa: E402
from bionn.spiking.networks import coba  # noqa: E402
from sparse_connectome import NEEDS, make_step, optic_lobe_edges, times_ten, write_arrays  # noqa: E402

SIZES = {"coba_4k": (4_000, 1000.0), "coba_40k": (40_000, 200.0), "coba_400k": (400_000, 50.0)}
QUICK_SIZES = {"coba_400": (400, 20.0), "coba_4k": (4_000, 10.0)}
SNN = {"snn_ff_16384": {"n": 16_384, "batch": 16, "steps": 500}}
QUICK_SNN = {"snn_ff_64": {"n": 64, "batch": 2, "steps": 8}}
CTRNN_SIZES, QUICK_CTRNN_SIZES = (256, 512, 1024, 2048), (32, 64)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def run_coba(n: int, duration: float, device: torch.device, seed: int = 1) -> dict:
    net = coba(n, generator=torch.Generator().manual_seed(seed))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    net.run(5.0, dt=0.1, progress=False, seed=seed, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    res = net.run(duration, dt=0.1, progress=False, seed=seed, device=device)
    _sync(device)
    wall = time.perf_counter() - t0
    rate = res.spikes["P"].count() / (n * duration / 1000.0)
    return {"n": n, "duration_ms": duration, "wall_s": round(wall, 3),
            "sim_s_per_wall_s": round(duration / 1000.0 / wall, 4), "rate_hz": round(rate, 2),
            "peak_gpu_mb": _peak_mb(device)}


def _failure(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:120]}"


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a wait for the device (so that a wall time is the work's)."""
    def call() -> object:
        out = fn()
        _sync(device)
        return out

    return call


def cuda_graph(body: Callable[[], torch.Tensor], params: list[torch.Tensor],
               device: torch.device) -> Callable[[], float]:
    """``body`` (forward, backward, optionally an optimizer step; returns a scalar tensor)
    captured once as a CUDA graph: a closure that replays it and returns the scalar.

    The pattern of PyTorch's whole-network capture: three warm-up calls on a side stream,
    gradients set to None, one capture (the backward's gradients then live in the graph's
    memory and every replay overwrites them).
    """
    if device.type != "cuda":
        raise RuntimeError("CUDA graphs need a CUDA device")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            for p in params:
                p.grad = None
            body()
    torch.cuda.current_stream(device).wait_stream(side)
    for p in params:
        p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()

    def replay() -> float:
        graph.replay()
        return float(out)

    return replay


def snn_graph_step(n: int, batch: int, steps: int, device: torch.device) -> Callable[[], float]:
    """bionn's pass of :func:`snn_train.ff_step` as a CUDA graph (same model and input)."""
    layer, x = snn_train.bionn_ff_model(n, batch, steps, device=device)

    def body() -> torch.Tensor:
        spikes = layer(x)
        spikes.sum().backward()
        return spikes.detach().mean()

    return cuda_graph(body, list(layer.parameters()), device)


def ctrnn_graph_step(n: int, device: torch.device) -> Callable[[], float]:
    """The step of :func:`ctrnn_train.bionn_step` as one CUDA graph."""
    net, x, target = ctrnn_train.bionn_model(n, device=device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=True)

    def body() -> torch.Tensor:
        out, _ = net(x)
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        opt.step()
        return loss.detach()

    return cuda_graph(body, list(net.parameters()), device)


def _build(builders: dict[str, Callable[[], Callable[[], object] | None]],
           device: torch.device, out: dict) -> dict[str, Callable[[], object]]:
    """Build each variant and run it once (peak memory of that call on CUDA); a
    variant that is not installed or fails is left out, the reason under ``skipped``."""
    fns: dict[str, Callable[[], object]] = {}
    for name, build in builders.items():
        try:
            fn = build()
            if fn is None:
                out.setdefault("skipped", {})[name] = "not installed"
                continue
            fn = _synced(fn, device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fn()
            out[f"{name}_peak_gpu_mb"] = _peak_mb(device)
            fns[name] = fn
        except (RuntimeError, MemoryError) as e:
            out[f"{name}_ms"] = None
            out.setdefault("skipped", {})[name] = _failure(e)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return fns


def _time_variants(builders: dict[str, Callable[[], Callable[[], object] | None]],
                   device: torch.device, out: dict, warmup: int,
                   rounds: int) -> dict[str, list[float]]:
    """:func:`_build` the variants, time them in interleaved rounds and put each one's
    median under ``<name>_ms``; the per-round times, for ratios."""
    times = interleaved_times(_build(builders, device, out), warmup=warmup, rounds=rounds)
    for name, ms in medians_ms(times).items():
        out[f"{name}_ms"] = round(ms, 3)
    return times


def run_snn(n: int, batch: int, steps: int, device: torch.device, rounds: int) -> dict:
    out: dict = {"n": n, "batch": batch, "steps": steps}
    builders = {lib: (lambda lib=lib: snn_train.ff_step(lib, n, batch, steps, device=device))
                for lib in snn_train.VARIANTS}
    builders["bionn_cuda_graph"] = lambda: snn_graph_step(n, batch, steps, device)
    times = _time_variants(builders, device, out, warmup=1, rounds=rounds)
    if "bionn" in times and "floor" in times:
        out["bionn_over_floor"] = round(paired_ratio(times["bionn"], times["floor"]), 3)
    return out


def run_ctrnn(n: int, device: torch.device, rounds: int) -> dict:
    out: dict = {"n": n, "batch": ctrnn_train.BATCH, "steps": ctrnn_train.STEPS}
    times = _time_variants({"bionn": lambda: ctrnn_train.bionn_step(n, device=device),
                            "floor": lambda: ctrnn_train.floor_step(n, device=device),
                            "bionn_cuda_graph": lambda: ctrnn_graph_step(n, device)},
                           device, out, warmup=2, rounds=rounds)
    for name in ("bionn", "bionn_cuda_graph"):
        if name in times and "floor" in times:
            out[f"{name}_ratio_vs_floor"] = round(paired_ratio(times[name], times["floor"]), 3)
    return out


def run_connectome(n: int, post, pre, device: torch.device, repeats: int) -> dict:
    out: dict = {"n": int(n), "nnz": int(len(post))}
    with tempfile.TemporaryDirectory() as tmp:
        write_arrays(Path(tmp), n, post, pre)
        for impl in ("bionn", "torch_csr", "gather_scatter"):
            try:
                arrays = {k: torch.from_numpy(np.load(Path(tmp) / f"{k}.npy")).to(device)
                          for k in NEEDS[impl]}
                gen = torch.Generator().manual_seed(0)
                values = (torch.rand(len(post), generator=gen) * 0.01).to(device)
                x, gy = (torch.randn(8, n, generator=gen).to(device) for _ in range(2))
                step = make_step(impl, n, arrays, values, x, gy)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                step()
                _sync(device)
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    step()
                    _sync(device)
                    ts.append(time.perf_counter() - t0)
                out[f"{impl}_ms"] = round(1e3 * statistics.median(ts), 3)
                out[f"{impl}_peak_gpu_mb"] = _peak_mb(device)
            except (RuntimeError, MemoryError) as e:  # out of memory: report, go on
                out[f"{impl}_ms"] = None
                out.setdefault("skipped", {})[impl] = _failure(e)
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--repeats", type=positive_int, default=20,
                   help="timed repeats of a connectome step, >= 1")
    a = p.parse_args(argv)
    if a.device in ("auto", "cuda") and not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is False)"
        print(f"gpu_scale: skipped: {reason}")
        result = {"benchmark": "gpu_scale", "device": None, "skipped": reason}
        print(json.dumps(result))
        return result
    device = torch.device("cpu" if a.device == "cpu" else "cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result: dict = {"benchmark": "gpu_scale", "device": name, "torch": torch.__version__}
    for key, (n, duration) in (QUICK_SIZES if a.quick else SIZES).items():
        result[key] = run_coba(n, duration, device)
        print(f"{key}: {result[key]}")
    for key, case in (QUICK_SNN if a.quick else SNN).items():
        result[key] = run_snn(case["n"], case["batch"], case["steps"], device,
                              rounds=2 if a.quick else 5)
        print(f"{key}: {result[key]}")
    for n in QUICK_CTRNN_SIZES if a.quick else CTRNN_SIZES:
        result[f"ctrnn_{n}"] = run_ctrnn(n, device, rounds=2 if a.quick else 21)
        print(f"ctrnn_{n}: {result[f'ctrnn_{n}']}")
    n, post, pre, source = optic_lobe_edges(a.quick)
    result["connectome_source"] = source
    result["connectome_optic_lobe"] = run_connectome(n, post, pre, device, a.repeats)
    if source.startswith("flyvis"):
        n10, post10, pre10, _ = optic_lobe_edges(False, extent=7 if a.quick else 48)
    else:
        n10, post10, pre10 = times_ten(n, post, pre)
    result["connectome_optic_lobe_x10"] = run_connectome(n10, post10, pre10, device, a.repeats)
    for key in ("connectome_optic_lobe", "connectome_optic_lobe_x10"):
        print(f"{key}: {result[key]}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
