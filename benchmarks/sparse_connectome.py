"""Sparse recurrent step at connectome scale: bionn.sparse.spmm vs PyTorch's own.

One recurrent step, forward and backward: ``y = x W^T`` for ``x`` of shape
(batch 8, N), then the gradients with respect to ``x`` and to the stored values
of ``W`` (``(post, pre)``, fixed pattern), float32, on CPU. Implementations:

* ``bionn``: :func:`bionn.sparse.spmm` (int32 indices; a compiled pass over the rows for
  the forward and one over the CSR entries giving ``dx`` and the value gradient; without a
  C++ compiler ``torch.sparse.mm`` on CSR, the CSR of the transpose for ``dx`` and
  ``sampled_addmm`` for the values);
* ``torch_csr``: ``torch.sparse.mm`` on a ``sparse_csr_tensor`` whose values
  require grad (autograd of PyTorch);
* ``torch_coo``: the same with a coalesced ``sparse_coo_tensor``;
* ``gather_scatter``: ``y = zeros.index_add(1, post, x[:, pre] * values)``
  (the flyvis / torch_sparse approach), int64 indices, autograd.

Sizes: ``optic_lobe`` is the Drosophila optic-lobe network built from the flyvis
template (:func:`bionn.circuits.connectome.fly_optic_lobe`: 45,669 neurons,
1,513,231 synapses, hexagonal extent 15) when ``flyvis`` is installed, else a synthetic
graph of the same size and in-degree; ``optic_lobe_x10`` is the same template's wiring
on a wider eye (extent 48: 446,993 neurons, 15.4 M synapses, 10.2x), or without flyvis
ten copies of the synthetic graph with each synapse's presynaptic neuron moved to a
random copy.

Every (size, implementation, thread count) runs in a fresh subprocess that loads
precomputed index arrays from ``.npy`` files (no sorting in the worker), warms up
once, then reports the median of repeated forward+backward passes.
``peak_mb`` = the worker's peak resident set size (``ru_maxrss``) minus its
resident size just before loading the matrix (torch already imported): all the
memory the method holds — indices, values, activations, gradients and
temporaries. ``needed_mb`` = values and their gradient (2 x 4 bytes per synapse),
one int64 CSR index set (8 bytes per synapse + 8 per row) and the activations
``x``, ``y``, ``dy``, ``dx`` (4 x batch x N x 4 bytes). ``torch_csr`` and
``torch_coo`` build an N x N dense gradient in their backward (PyTorch 2.x on
CPU; measured here at 10k and 20k neurons: peak RSS grows as N^2); they are
skipped with a reason where ``1.5 x 4 N^2`` bytes exceed 60% of the available
memory, and reported as ``null``.

Single-thread figures (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``) are
top-level; all-thread figures under ``"threads_all"``. ``"passes"``: bionn's step taken
apart at each size (one thread, median of 9, ns per synapse): the forward ``W x``
(``torch.sparse.mm``, and the compiled pass with its transposes), the compiled backward (both gradients, with its transposes of the activations and the fresh
gradient), the PyTorch path's passes (the gather of the values into transpose order,
``dx = W^T dy``, the value gradient), and a control with the same matrix's neurons
renumbered at random (both forwards, the compiled backward, the value gradient), which separates cache
effects of the wiring's locality from the growth in synapses. The last stdout line is
one JSON object. ``--quick``: a small optic lobe (lattice radius 2, 1,203
neurons; radius 7 for the larger size), workers in-process and no memory figures (a smoke test).
Run: ``python benchmarks/sparse_connectome.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import positive_int, reset_hwm, rss_now_mb, vm_hwm_mb  # noqa: E402

IMPLS = ("bionn", "torch_csr", "torch_coo", "gather_scatter")
BATCH = 8


def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if threads is None:
            env.pop(k, None)
        else:
            env[k] = str(threads)
    return env








def _mem_available_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


# -- data --------------------------------------------------------------------------
def optic_lobe_edges(quick: bool, extent: int = 15):
    """(n, post, pre) of the optic lobe (flyvis template) or a synthetic stand-in."""
    import numpy as np

    try:
        from bionn.circuits.connectome import fly_optic_lobe

        c = fly_optic_lobe(extent=2 if quick else extent)
        return c.n, c.post.numpy(), c.pre.numpy(), "flyvis template"
    except ImportError:
        n, nnz = (1203, 29_000) if quick else (45_669, 1_513_231)
        rng = np.random.default_rng(0)
        post = rng.integers(0, n, nnz)
        pre = (post + rng.integers(-n // 50, n // 50, nnz)) % n  # local, like retinotopic columns
        key = np.unique(post * n + pre)
        return n, key // n, key % n, "synthetic (flyvis not installed)"


def times_ten(n, post, pre, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    copies = 10
    c_post = np.repeat(np.arange(copies), post.size)
    c_pre = (c_post + rng.integers(0, copies, c_post.size)) % copies
    big_post = np.tile(post, copies) + c_post * n
    big_pre = np.tile(pre, copies) + c_pre * n
    return n * copies, big_post, big_pre


def write_arrays(folder: Path, n: int, post, pre) -> None:
    """Index arrays in every layout the workers need, sorted once here."""
    import numpy as np

    key = post.astype(np.int64) * n + pre
    order = np.argsort(key, kind="stable")
    row, col = post[order].astype(np.int64), pre[order].astype(np.int64)
    crow = np.zeros(n + 1, np.int64)
    crow[1:] = np.cumsum(np.bincount(row, minlength=n))
    t_crow = np.zeros(n + 1, np.int64)
    t_crow[1:] = np.cumsum(np.bincount(col, minlength=n))
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "row64.npy", row)
    np.save(folder / "col64.npy", col)
    np.save(folder / "crow64.npy", crow)
    np.save(folder / "coo64.npy", np.stack([row, col]))
    for name, a in (("crow32", crow), ("col32", col), ("t_crow32", t_crow)):
        np.save(folder / f"{name}.npy", a.astype(np.int32))
    (folder / "meta.json").write_text(json.dumps({"n": int(n), "nnz": int(row.size)}))


# -- worker -------------------------------------------------------------------------
def make_step(impl: str, n: int, arrays: dict, values, x, gy):
    """The forward+backward step of one method, returning ``(d values, d x)``."""
    import torch

    from bionn.sparse import SparseStructure, spmm

    if impl == "bionn":
        s = SparseStructure((n, n), *(arrays[k] for k in ("crow32", "col32", "t_crow32")))

        def step():
            v, xx = values.detach().requires_grad_(True), x.detach().requires_grad_(True)
            spmm(v, s, xx).backward(gy)
            return v.grad, xx.grad
    elif impl == "torch_csr":
        crow, col = arrays["crow64"], arrays["col64"]

        def step():
            v, xx = values.detach().requires_grad_(True), x.detach().requires_grad_(True)
            w = torch.sparse_csr_tensor(crow, col, v, (n, n))
            torch.sparse.mm(w, xx.t()).t().backward(gy)
            return v.grad, xx.grad
    elif impl == "torch_coo":
        idx = arrays["coo64"]

        def step():
            v, xx = values.detach().requires_grad_(True), x.detach().requires_grad_(True)
            w = torch.sparse_coo_tensor(idx, v, (n, n), is_coalesced=True)
            torch.sparse.mm(w, xx.t()).t().backward(gy)
            return v.grad, xx.grad
    elif impl == "gather_scatter":
        row, col = arrays["row64"], arrays["col64"]

        def step():
            v, xx = values.detach().requires_grad_(True), x.detach().requires_grad_(True)
            y = x.new_zeros(x.shape[0], n).index_add(1, row, xx[:, col] * v)
            y.backward(gy)
            return v.grad, xx.grad
    else:
        raise ValueError(impl)
    return step


NEEDS = {"bionn": ("crow32", "col32", "t_crow32"), "torch_csr": ("crow64", "col64"),
         "torch_coo": ("coo64",), "gather_scatter": ("row64", "col64")}


def _tiny_arrays(n: int = 64) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    key = np.unique(rng.integers(0, n, 4 * n) * n + rng.integers(0, n, 4 * n))
    post, pre = key // n, key % n
    crow = np.concatenate([[0], np.cumsum(np.bincount(post, minlength=n))])
    t_crow = np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=n))])
    a = {"row64": post, "col64": pre, "crow64": crow, "coo64": np.stack([post, pre]), "crow32": crow,
         "col32": pre, "t_crow32": t_crow}
    return {k: (v.astype(np.int32) if k.endswith("32") else v.astype(np.int64)) for k, v in a.items()}


def worker(impl: str, folder: Path, threads: int | None, repeats: int) -> dict:
    import warnings

    import numpy as np
    import torch

    warnings.simplefilter("ignore")
    if threads is not None:
        torch.set_num_threads(threads)
    meta = json.loads((folder / "meta.json").read_text())
    n, nnz = meta["n"], meta["nnz"]
    # Page in the code of this method (and the thread pool) on a tiny matrix first,
    # so that the memory figure is data, not shared-library pages touched once.
    tiny = {k: torch.from_numpy(v) for k, v in _tiny_arrays().items()}
    nt = int(tiny["crow64"].numel() - 1)
    make_step(impl, nt, tiny, torch.rand(int(tiny["col64"].numel())), torch.randn(BATCH, nt),
              torch.randn(BATCH, nt))()
    del tiny
    reset = reset_hwm()  # forget earlier peaks (import torch, warm-up)
    rss0 = rss_now_mb()

    arrays = {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in NEEDS[impl]}
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(nnz, generator=gen).mul_(0.01)  # in place: no setup temporary in the peak
    x = torch.randn(BATCH, n, generator=gen)
    gy = torch.randn(BATCH, n, generator=gen)
    step = make_step(impl, n, arrays, values, x, gy)
    t0 = time.perf_counter()
    dv, dx = step()  # warm-up
    first = time.perf_counter() - t0
    check = [float(dv.sum(dtype=torch.float64)), float(dx.sum(dtype=torch.float64))]
    del dv, dx
    reps = repeats if first < 1.0 else max(3, min(repeats, int(10 / first)))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    hwm = vm_hwm_mb()
    peak = hwm if (reset and hwm is not None) else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    ts.sort()
    return {"ms": ts[len(ts) // 2] * 1e3, "peak_mb": peak - rss0, "repeats": reps, "check": check,
            "threads": torch.get_num_threads(), "peak_from": "VmHWM" if reset else "ru_maxrss"}


def passes_worker(folder: Path, repeats: int = 9) -> dict:
    """bionn's step pass by pass, ns per synapse (see the module docstring)."""
    import warnings

    import numpy as np
    import torch

    from bionn.sparse import SparseStructure, _native
    from bionn.sparse.ops import value_grad

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    meta = json.loads((folder / "meta.json").read_text())
    n, nnz = meta["n"], meta["nnz"]
    a = {k: torch.from_numpy(np.load(folder / f"{k}.npy")) for k in NEEDS["bionn"]}
    s = SparseStructure((n, n), *(a[k] for k in ("crow32", "col32", "t_crow32")))
    g = torch.Generator().manual_seed(0)
    v, x, gy = torch.rand(nnz, generator=g), torch.randn(BATCH, n, generator=g), torch.randn(BATCH, n, generator=g)
    buf = torch.empty(nnz)
    perm = torch.randperm(n, generator=g)
    shuffled, _ = SparseStructure.from_edges(perm[s.row.long()], perm[s.col.long()], (n, n))
    parts = {
        "forward": lambda: torch.sparse.mm(s.csr(v), x.t()),
        "forward_compiled": lambda: _native.forward(s.crow, s.col, v, x),
        "forward_compiled_shuffled": lambda: _native.forward(shuffled.crow, shuffled.col, v, x),
        "backward_compiled": lambda: _native.backward(s.crow, s.col, s.t_crow, v, gy, x, True, True),
        "backward_compiled_shuffled": lambda: _native.backward(shuffled.crow, shuffled.col, shuffled.t_crow,
                                                               v, gy, x, True, True),
        "transpose_values": lambda: torch.index_select(v, 0, s.t_perm, out=buf),
        "dx": lambda: torch.sparse.mm(s.csr_t(v, out=buf), gy.t()),
        "value_grad": lambda: value_grad(s, gy, x, values=v, out=buf),
        "forward_shuffled": lambda: torch.sparse.mm(shuffled.csr(v), x.t()),
        "value_grad_shuffled": lambda: value_grad(shuffled, gy, x, values=v, out=buf),
    }
    out: dict = {"nnz": nnz}
    if not _native.applies(s.crow, s.col, v, gy, x):  # no compiler: the PyTorch path only
        parts = {k: f for k, f in parts.items() if "_compiled" not in k}
    for name, f in parts.items():
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out[f"{name}_ns_per_synapse"] = round(sorted(ts)[len(ts) // 2] * 1e9 / nnz, 2)
    return out


def spawn(impl: str, folder: Path, threads: int | None, repeats: int, in_process: bool = False) -> dict | None:
    if in_process:  # --quick: no subprocess, no memory figure
        import torch

        old = torch.get_num_threads()
        try:
            r = passes_worker(folder, repeats) if impl == "passes" else worker(impl, folder, threads, repeats)
        finally:
            torch.set_num_threads(old)
        if impl != "passes":
            r["peak_mb"] = float("nan")
        return r
    args = [sys.executable, __file__, "--worker", impl, str(folder), str(threads or 0), str(repeats)]
    proc = subprocess.run(args, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"worker {impl} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_size(name: str, folder: Path, threads: int | None, repeats: int, in_process: bool = False) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    n, nnz = meta["n"], meta["nnz"]
    needed = (2 * 4 * nnz + 8 * nnz + 8 * (n + 1) + 4 * BATCH * n * 4) / 2**20
    out: dict = {"n": n, "nnz": nnz}
    skipped = {}
    checks = {}
    for impl in IMPLS:
        if impl in ("torch_csr", "torch_coo") and in_process and name.endswith("x10"):
            skipped[impl] = "not run in --quick"
            out[f"{impl}_ms"] = None
            continue
        if impl in ("torch_csr", "torch_coo"):
            dense_mb = 1.5 * 4 * n * n / 2**20
            if dense_mb > 0.6 * _mem_available_mb():
                skipped[impl] = f"backward builds a dense {n}x{n} gradient (~{dense_mb / 1024:.0f} GB)"
                out[f"{impl}_ms"] = None
                continue
        r = spawn(impl, folder, threads, repeats, in_process)
        out[f"{impl}_ms"] = None if r is None else round(r["ms"], 3)
        peak = None if r is None or r["peak_mb"] != r["peak_mb"] else round(r["peak_mb"], 1)
        if r is not None:
            out[f"{impl}_peak_mb"] = peak
            checks[impl] = r["check"]
        if impl == "bionn":
            out["peak_mb"] = peak
        shown = "failed" if r is None else f"{r['ms']:10.2f} ms  peak {r['peak_mb']:8.1f} MB"
        print(f"  {name:15s} threads={threads or 'all'} {impl:15s} {shown}", flush=True)
    out["needed_mb"] = round(needed, 1)
    if skipped:
        out["skipped"] = skipped
    ref = checks.get("bionn")
    if ref:
        out["agree"] = all(abs(c[0] - ref[0]) <= 1e-3 * (1 + abs(ref[0])) and
                           abs(c[1] - ref[1]) <= 1e-3 * (1 + abs(ref[1])) for c in checks.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=positive_int, default=7, help="timed repeats, >= 1")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        impl, folder, threads, repeats = a.worker
        if impl == "passes":
            print(json.dumps(passes_worker(Path(folder), int(repeats))))
        else:
            print(json.dumps(worker(impl, Path(folder), int(threads) or None, int(repeats))))
        return
    n, post, pre, source = optic_lobe_edges(a.quick)
    repeats = 2 if a.quick else a.repeats
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_arrays(tmp / "optic_lobe", n, post, pre)
        if source.startswith("flyvis"):
            # the same wiring rules on a wider eye: extent 48 has 10.2x the synapses
            n10, post10, pre10, _ = optic_lobe_edges(False, extent=7 if a.quick else 48)
        else:
            n10, post10, pre10 = times_ten(n, post, pre)
        write_arrays(tmp / "optic_lobe_x10", n10, post10, pre10)
        del post10, pre10
        result: dict = {}
        all_threads: dict = {}
        passes: dict = {}
        for name in ("optic_lobe", "optic_lobe_x10"):
            result[name] = run_size(name, tmp / name, 1, repeats, a.quick)
            all_threads[name] = run_size(name, tmp / name, None, repeats, a.quick)
            passes[name] = spawn("passes", tmp / name, 1, 3 if a.quick else 9, a.quick)
    for res in (result, all_threads):
        for r in res.values():
            times = {k: r[f"{k}_ms"] for k in IMPLS if r.get(f"{k}_ms") is not None}
            r["fastest"] = min(times, key=times.get) if times else None
    b1, b10 = result["optic_lobe"]["bionn_ms"], result["optic_lobe_x10"]["bionn_ms"]
    if b1 and b10:
        result["bionn_time_ratio_x10"] = round(b10 / b1, 2)
        result["nnz_ratio_x10"] = round(result["optic_lobe_x10"]["nnz"] / result["optic_lobe"]["nnz"], 2)
    result["threads_all"] = all_threads
    result["passes"] = passes
    result["source"] = source
    result["batch"] = BATCH
    result["cpu_count"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
