"""Time one training step of a 256-unit E/I CTRNN: bionn vs NN4N vs the matmul floor.

One step = ``zero_grad`` + forward + MSE loss + backward + ``Adam.step`` on a
CTRNN with 3 inputs, 256 units (80% E, Dale's law), 3 outputs, relu,
dt = 20 ms, tau = 100 ms, 100 time steps, batch 64, on ONE CPU thread.

* ``bionn``: ``bionn.rate.CTRNN`` as shipped (its ``run`` uses the fused
  :func:`bionn.functional.ctrnn_scan.ctrnn_scan`, manual BPTT).
* ``bionn_autograd``: the same model with ``fused=False`` (the step-by-step
  autograd loop), for context.
* ``nn4n``: NN4N 1.1.1's ``CTRNN`` (time-first), Dale's law through ``ei_masks``;
  null if NN4N is not installed.
* ``floor``: only the matrix products such a step cannot avoid, as plain
  ``torch.mm`` calls on same-shaped tensors (no autograd): input projection, T recurrent
  products forward and T backward, readout, the readout's gradient onto the rates, and the
  three weight gradients. (Until 2026-12-07 the readout's gradient onto the rates was
  missing; it adds about 0.6 ms at N = 256.)

All variants are timed in interleaved rounds (one step of each per round, in
shuffled order, after warm-up): ``ms_per_step`` is the median over the rounds, a
ratio the median of the per-round ratios (``_harness.paired_ratio``). The last stdout line is one JSON
object. Run: ``python benchmarks/ctrnn_train.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared _harness module
from _harness import interleaved_medians, interleaved_times, medians_ms, paired_ratio  # noqa: E402
from bionn.rate import CTRNN

try:  # optional reference package
    from nn4n.model import CTRNN as NN4NCTRNN
except ImportError:  # pragma: no cover
    NN4NCTRNN = None

N_IN, N_OUT, BATCH, STEPS = 3, 3, 64, 100
DT, TAU, E_FRACTION = 20.0, 100.0, 0.8
SIZES = (128, 256, 512, 1024, 2048)


# ----------------------------------------------------------------------- models
def adam_step(net: torch.nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], float]:
    """One training step of ``net`` (zero_grad, forward, MSE, backward, Adam) as a closure."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> float:
        opt.zero_grad()
        out, _ = net(x)
        loss = F.mse_loss(out, target)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def bionn_model(n_hidden: int, fused: bool = True, seed: int = 0,
                device: torch.device | str = "cpu"):
    """``(CTRNN, input, target)`` of the benchmark's step on ``device``."""
    torch.manual_seed(seed)
    net = CTRNN(N_IN, n_hidden, N_OUT, dt=DT, tau=TAU, e_fraction=E_FRACTION, activation="relu",
                fused=fused).to(device)
    x = torch.randn(BATCH, STEPS, N_IN).to(device)
    return net, x, torch.randn(BATCH, STEPS, N_OUT).to(device)


def bionn_step(n_hidden: int, fused: bool = True, seed: int = 0,
               device: torch.device | str = "cpu") -> Callable[[], float]:
    return adam_step(*bionn_model(n_hidden, fused, seed, device))


def nn4n_ei_masks(n_hidden: int) -> list[torch.Tensor]:
    """NN4N ``ei_masks`` in its (pre, post) orientation: +1 rows for E, -1 rows for I."""
    n_e = round(E_FRACTION * n_hidden)
    pre_sign = torch.ones(n_hidden)
    pre_sign[n_e:] = -1
    return [
        torch.ones(N_IN, n_hidden),  # afferents treated as excitatory
        pre_sign[:, None].expand(n_hidden, n_hidden).clone(),
        pre_sign[:, None].expand(n_hidden, N_OUT).clone(),
    ]


def nn4n_step(n_hidden: int, seed: int = 0) -> Callable[[], float] | None:
    if NN4NCTRNN is None:
        return None
    torch.manual_seed(seed)
    net = NN4NCTRNN(
        dims=[N_IN, n_hidden, N_OUT],
        ei_masks=nn4n_ei_masks(n_hidden),
        biases=[None, "zero", "zero"],  # learnable recurrent and readout biases, like bionn
        activation="relu",
        dt=DT,
        tau=TAU,
    )
    net.train()  # training mode: NN4N enforces Dale's law in every forward
    x = torch.randn(STEPS, BATCH, N_IN)  # NN4N is time-first
    return adam_step(net, x, torch.randn(STEPS, BATCH, N_OUT))


def floor_step(n_hidden: int, seed: int = 0,
               device: torch.device | str = "cpu") -> Callable[[], None]:
    """The matrix products of one training step, nothing else (on ``device``; the
    closure does not wait for it)."""
    g = torch.Generator().manual_seed(seed)
    bt, n = BATCH * STEPS, n_hidden

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    x = randn(bt, N_IN)
    w_in = randn(N_IN, n)
    r = randn(BATCH, n)
    w = randn(n, n) / n**0.5
    rates = randn(bt, n)
    grads = randn(bt, n)
    w_out = randn(n, N_OUT)
    g_out = randn(bt, N_OUT)
    mm = torch.mm

    def step() -> None:
        mm(x, w_in)  # input projection
        for _ in range(STEPS):
            mm(r, w)  # recurrence
        mm(rates, w_out)  # readout
        mm(g_out, w_out.T)  # readout gradient onto the rates (dL/dr_t from the outputs)
        for _ in range(STEPS):
            mm(r, w)  # state gradient through the recurrence
        mm(rates.T, grads)  # recurrent weight gradient
        mm(x.T, grads)  # input weight gradient
        mm(rates.T, g_out)  # readout weight gradient

    return step


def page_faults_per_call(fn: Callable[[], object], calls: int = 3) -> float | None:
    """Minor page faults per call (fresh memory touched: allocator behaviour, Unix only)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


# ----------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, N <= 512 (smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    warmup, rounds = (2, 5) if args.quick else (5, 41)

    fns: dict[str, Callable[[], object]] = {"bionn": bionn_step(256)}
    fns["bionn_autograd"] = bionn_step(256, fused=False)
    nn4n = nn4n_step(256)
    if nn4n is not None:
        fns["nn4n"] = nn4n
    fns["floor"] = floor_step(256)
    times = interleaved_times(fns, warmup, rounds)
    med = medians_ms(times)
    faults = {k: page_faults_per_call(fn) for k, fn in fns.items()}

    sizes = SIZES[:3] if args.quick else SIZES
    scaling: dict[str, float] = {}
    scaling_floor: dict[str, float] = {}
    for n in sizes:
        if n == 256:
            scaling["256"] = med["bionn"]
            scaling_floor["256"] = med["floor"]
            continue
        w, k = (1, 3) if n >= 2048 else (2, 5) if n >= 1024 else (3, 9)
        if args.quick:
            w, k = 1, 3
        sweep = {"bionn": bionn_step(n), "floor": floor_step(n)}
        m = interleaved_medians(sweep, w, k)
        scaling[str(n)] = m["bionn"]
        scaling_floor[str(n)] = m["floor"]

    bionn_ms, floor_ms, nn4n_ms = med["bionn"], med["floor"], med.get("nn4n")
    print(f"CTRNN training step: N=256, B={BATCH}, T={STEPS}, relu, 80% E, 1 thread, "
          f"torch {torch.__version__}; median of {rounds} interleaved rounds")
    print(f"{'variant':<14}{'ms/step':>10}{'x floor':>9}{'page faults/step':>18}")
    for name, ms in med.items():
        pf = "n/a" if faults[name] is None else f"{faults[name]:.0f}"
        print(f"{name:<14}{ms:>10.2f}{ms / floor_ms:>9.2f}{pf:>18}")
    if nn4n_ms is None:
        print("nn4n          not installed")
    print(f"\n{'N':>6}{'bionn ms':>11}{'floor ms':>11}")
    for n in sizes:
        print(f"{n:>6}{scaling[str(n)]:>11.2f}{scaling_floor[str(n)]:>11.2f}")

    result = {
        "benchmark": "ctrnn_train",
        "ms_per_step": round(bionn_ms, 3),
        "nn4n_ms_per_step": None if nn4n_ms is None else round(nn4n_ms, 3),
        "floor_ms_per_step": round(floor_ms, 3),
        "ratio_vs_nn4n": None if nn4n_ms is None else round(
            paired_ratio(times["nn4n"], times["bionn"]), 3),
        "ratio_vs_floor": round(paired_ratio(times["bionn"], times["floor"]), 3),
        "scaling": {k: round(v, 2) for k, v in scaling.items()},
        "scaling_floor": {k: round(v, 2) for k, v in scaling_floor.items()},
        "autograd_loop_ms_per_step": round(med["bionn_autograd"], 3),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
