"""Large networks on a GPU: COBA at 4k, 40k and 400k neurons and the connectome step at the
fly optic-lobe size and 10x, with the same code as on the CPU (``device=`` only).

* ``coba_<n>``: :func:`bionn.spiking.networks.coba` (exponential Euler, dt 0.1 ms) for
  1000 / 200 / 50 ms of biological time after a 5 ms warm-up; ``sim_s_per_wall_s`` =
  simulated seconds per wall second, ``rate_hz`` the mean rate (a sanity check: ~20 Hz),
  ``peak_gpu_mb`` = ``torch.cuda.max_memory_allocated``;
* ``connectome_optic_lobe`` / ``connectome_optic_lobe_x10``: one recurrent step forward and
  backward (values and input gradients), batch 8, of :func:`bionn.sparse.spmm` against
  PyTorch's CSR ``sparse.mm`` with autograd and gather/scatter (the implementations of
  ``benchmarks/sparse_connectome.py``), median of repeats with ``torch.cuda.synchronize``;
  a method that runs out of memory is reported as ``null`` with the reason.

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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bionn.spiking.networks import coba  # noqa: E402
from sparse_connectome import NEEDS, make_step, optic_lobe_edges, times_ten, write_arrays  # noqa: E402

SIZES = {"coba_4k": (4_000, 1000.0), "coba_40k": (40_000, 200.0), "coba_400k": (400_000, 50.0)}
QUICK_SIZES = {"coba_400": (400, 20.0), "coba_4k": (4_000, 10.0)}


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
                out.setdefault("skipped", {})[impl] = f"{type(e).__name__}: {str(e)[:120]}"
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    p.add_argument("--repeats", type=int, default=20)
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
