"""Surrogate-gradient SNN training pass: bionn vs snnTorch, Norse, SpikingJelly and the floor.

Forward + backward of a spiking network (loss = the sum of the output spikes; no optimizer
step), float32 on the CPU, every library in the same run, timed in interleaved rounds
(``_harness.interleaved_medians``), once on one thread and once on all threads.

Cases:

* ``ff_512``, ``ff_4096``: the Open Neuromorphic SNN-library benchmark shape: one
  ``Linear(n, n)`` (with bias) and one LIF layer, batch 16, 500 time steps, input uniform
  in [0, 1), no gradient for the input.

  - ``bionn``: ``SpikingLayer(n, n, "LIF", synapse="delta", reset="subtract",
    V_rest=0, V_reset=0, V_th=1, R=1, t_refractory=0, tau=-1/ln(0.9))`` (fast-sigmoid
    surrogate, detached reset): ``V_t = 0.9 V_{t-1} + 0.1 u_t - z_t``;
  - ``snntorch``: ``nn.Linear`` over the whole sequence, then ``snntorch.Leaky(beta=0.9,
    spike_grad=surrogate.fast_sigmoid())`` stepped in a Python loop (subtract reset, its
    reset detached and delayed by one step, snnTorch's default; its default surrogate is
    ATan, fast_sigmoid is set here to match bionn's);
  - ``norse``: ``nn.Linear`` over the sequence, then ``norse.torch.LIFBoxCell`` (LIF
    without a synaptic current, forward Euler with ``dt tau_mem_inv = 0.1``, i.e. decay
    0.9, SuperSpike surrogate = fast sigmoid, ``reset_subtract``) in a Python loop
    (Norse has no multi-step LIFBox module);
  - ``spikingjelly``: ``nn.Linear`` over the sequence, then ``neuron.LIFNode(tau=10,
    decay_input=True, v_reset=None, detach_reset=True, step_mode="m")`` (soft reset,
    its default sigmoid surrogate, the one its fused multi-step operator supports);
  - ``floor``: the same ``nn.Linear``'s forward + backward alone over the 500 steps
    (one ``(T B, n) x (n, n)`` product forward, the weight and bias gradients backward).

  The peers' Python loops step over ``cur.unbind(0)`` (one backward node for the
  whole sequence; indexing ``cur[t]`` would give a full-size zero gradient per step).
  All four LIFs compute ``V_t = 0.9 V_{t-1} + c u_t`` (``c`` = 1 for snnTorch, 0.1 for the
  others; their ``Linear`` weights are scaled by 10, so the spike statistics match).

* ``recurrent_1024``: a recurrent LIF network, 1,024 neurons, 256 inputs, batch 32, 200
  steps, delta synapses, loss = sum of the hidden spikes.

  - ``bionn``: ``SpikingRNN(256, 1024, 1, e_fraction=0.8, readout="linear", ...)``
    (Dale's law: 80 % E, 20 % I through its sign parametrization; same neuron options as
    above; its 1-unit linear readout is computed but not in the loss);
  - ``snntorch``: input ``nn.Linear`` over the sequence + ``snntorch.RLeaky(beta=0.9,
    linear_features=1024, spike_grad=fast_sigmoid())`` (all-to-all recurrent Linear);
  - ``norse``: ``norse.torch.LIFRecurrentCell(256, 1024)`` (``dt tau_mem_inv = 0.1``,
    ``dt tau_syn_inv = 1``: its synaptic current is emptied every step, i.e. a delta
    synapse; value reset, no autapses: Norse's defaults); it multiplies the input per step;
  - ``spikingjelly``: null (no recurrent LIF layer);
  - ``floor``: the matrix products alone, plain ``torch.mm``: input drive (one product),
    200 recurrent products forward, 200 backward, recurrent and input weight gradients.

  snnTorch and Norse have no Dale's law: they train an unconstrained recurrent matrix.

Memory (``*_peak_mb``): each (case, library, thread setting) runs in a fresh subprocess that
first runs the same code on a tiny size (pages in the code), builds the model and input at
full size, then records its resident set size, resets the peak (``/proc/self/clear_refs``)
and runs one forward + backward: ``peak_mb`` = the peak resident size during that pass minus
the resident size before it (saved activations, gradients, temporaries; not the model and
input). ``--quick`` measures this in-process (the numbers then mean little).

JSON (last stdout line): single-thread cases at the top level, all-thread cases under
``threads_all``; per case ``{lib}_ms``, ``floor_ms``, ``{lib}_peak_mb``, ``floor_peak_mb``,
``bionn_over_floor``, ``{lib}_beyond_floor_ms`` (time minus floor), ``targets``; ``versions``,
``notes``. Run: ``python benchmarks/snn_train.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import (  # noqa: E402
    all_threads,
    interleaved_medians,
    package_version,
    reset_hwm,
    rss_now_mb,
    vm_hwm_mb,
)
from bionn.spiking import SpikingLayer, SpikingRNN  # noqa: E402

try:
    import snntorch
    from snntorch import surrogate as snn_surrogate
except Exception as e:  # pragma: no cover - optional peer
    snntorch = None
    print(f"snntorch unavailable: {e!r}", file=sys.stderr)
try:
    from norse.torch import LIFBoxCell, LIFBoxParameters, LIFParameters, LIFRecurrentCell
    from norse.torch.functional.reset import reset_subtract
except Exception as e:  # pragma: no cover
    LIFBoxCell = None
    print(f"norse unavailable: {e!r}", file=sys.stderr)
try:
    from spikingjelly.activation_based import neuron as sj_neuron
except Exception as e:  # pragma: no cover
    sj_neuron = None
    print(f"spikingjelly unavailable: {e!r}", file=sys.stderr)

LIBS = ("bionn", "snntorch", "norse", "spikingjelly")
VARIANTS = (*LIBS, "floor")
BETA = 0.9  # membrane decay per step (dt = 1 ms, tau = -1 / ln 0.9 = 9.49 ms)
TAU = -1.0 / math.log(BETA)
GAIN = 1.0 / (1.0 - BETA)  # weight scale of the LIFs that integrate (1 - beta) u
FF = {"batch": 16, "steps": 500}
REC = {"n": 1024, "n_in": 256, "batch": 32, "steps": 200}
NEURON = dict(synapse="delta", reset="subtract", V_rest=0.0, V_reset=0.0, V_th=1.0, R=1.0,
              tau=TAU, t_refractory=0.0)


# ----------------------------------------------------------------------- builders
def _clear(params) -> None:
    for p in params:
        p.grad = None


def _linear(n_in: int, n_out: int, seed: int, scale: float = 1.0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out)
    with torch.no_grad():
        lin.weight.mul_(scale)
        lin.bias.mul_(scale)
    return lin


def _ff_input(n: int, batch: int, steps: int, seed: int, time_first: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(batch, steps, n, generator=g)
    return x.transpose(0, 1).contiguous() if time_first else x


def bionn_ff_model(n: int, batch: int, steps: int, seed: int = 0,
                   device: torch.device | str = "cpu") -> tuple[SpikingLayer, torch.Tensor]:
    """bionn's ``(layer, input)`` of the feed-forward case on ``device``."""
    layer = SpikingLayer(n, n, "LIF", dt=1.0, **NEURON)
    layer.linear.load_state_dict(_linear(n, n, seed, GAIN).state_dict())
    return layer.to(device), _ff_input(n, batch, steps, seed, time_first=False).to(device)


def ff_step(lib: str, n: int, batch: int, steps: int, seed: int = 0,
            device: torch.device | str = "cpu") -> Callable[[], float] | None:
    """Forward + backward of Linear(n, n) + LIF over ``steps`` steps, as a closure
    returning the mean spike rate (the floor: 0); None when the library is not
    installed. ``device``: where the model and input live."""
    if lib == "bionn":
        layer, x = bionn_ff_model(n, batch, steps, seed, device)
        params = list(layer.parameters())

        def step() -> float:
            _clear(params)
            spikes = layer(x)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "floor":
        lin = _linear(n, n, seed).to(device)
        x = _ff_input(n, batch, steps, seed, time_first=True).reshape(steps * batch, n).to(device)
        gy = torch.rand(steps * batch, n,
                        generator=torch.Generator().manual_seed(seed + 2)).to(device)
        params = list(lin.parameters())

        def step() -> float:
            _clear(params)
            lin(x).backward(gy)
            return 0.0

        return step
    x = _ff_input(n, batch, steps, seed, time_first=True).to(device)
    if lib == "snntorch":
        if snntorch is None:
            return None
        lin = _linear(n, n, seed).to(device)
        lif = snntorch.Leaky(beta=BETA, spike_grad=snn_surrogate.fast_sigmoid()).to(device)
        params = list(lin.parameters())

        def step() -> float:
            _clear(params)
            cur = lin(x)
            mem = lif.reset_mem()
            out = []
            for cur_t in cur.unbind(0):
                spk, mem = lif(cur_t, mem)
                out.append(spk)
            spikes = torch.stack(out)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "norse":
        if LIFBoxCell is None:
            return None
        lin = _linear(n, n, seed, GAIN).to(device)
        cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 - BETA), v_leak=torch.tensor(0.0),
                                           v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0),
                                           method="super", alpha=torch.tensor(100.0),
                                           reset_method=reset_subtract), dt=1.0)
        params = list(lin.parameters())

        def step() -> float:
            _clear(params)
            cur = lin(x)
            state, out = None, []
            for cur_t in cur.unbind(0):
                z, state = cell(cur_t, state)
                out.append(z)
            spikes = torch.stack(out)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "spikingjelly":
        if sj_neuron is None:
            return None
        lin = _linear(n, n, seed, GAIN).to(device)
        node = sj_neuron.LIFNode(tau=GAIN, decay_input=True, v_threshold=1.0, v_reset=None,
                                 detach_reset=True, step_mode="m").to(device)
        params = list(lin.parameters())

        def step() -> float:
            _clear(params)
            node.reset()
            spikes = node(lin(x))
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    raise ValueError(lib)


def rec_step(lib: str, n: int, n_in: int, batch: int, steps: int,
             seed: int = 0) -> Callable[[], float] | None:
    """Forward + backward of a recurrent LIF network (sum of hidden spikes as the loss)."""
    g = torch.Generator().manual_seed(seed + 1)
    x_bf = torch.rand(batch, steps, n_in, generator=g)
    x = x_bf.transpose(0, 1).contiguous()
    if lib == "bionn":
        net = SpikingRNN(n_in, n, 1, dt=1.0, e_fraction=0.8, readout="linear", input_gain=3.0,
                         recurrent_gain=1.0, generator=torch.Generator().manual_seed(seed), **NEURON)
        params = list(net.parameters())

        def step() -> float:
            _clear(params)
            _, spikes = net(x_bf)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "floor":
        bt = batch * steps
        w_in = torch.randn(n_in, n, generator=g) / n_in**0.5
        w = torch.randn(n, n, generator=g) / n**0.5
        z = (torch.rand(batch, n, generator=g) < 0.1).float()
        xs = x.reshape(bt, n_in)
        zs = (torch.rand(bt, n, generator=g) < 0.1).float()
        gu = torch.randn(bt, n, generator=g)
        gz = torch.randn(batch, n, generator=g)
        mm = torch.mm

        def step() -> float:
            mm(xs, w_in)  # input drive, all steps
            for _ in range(steps):
                mm(z, w)  # recurrent input
            for _ in range(steps):
                mm(gz, w.T)  # gradient to the previous step's spikes
            mm(gu.T, zs)  # recurrent weight gradient
            mm(gu.T, xs)  # input weight gradient
            return 0.0

        return step
    if lib == "snntorch":
        if snntorch is None:
            return None
        lin = _linear(n_in, n, seed, 3.0 / GAIN)
        rl = snntorch.RLeaky(beta=BETA, linear_features=n, spike_grad=snn_surrogate.fast_sigmoid())
        params = [*lin.parameters(), *rl.parameters()]

        def step() -> float:
            _clear(params)
            cur = lin(x)
            spk, mem = rl.reset_mem()
            out = []
            for cur_t in cur.unbind(0):
                spk, mem = rl(cur_t, spk, mem)
                out.append(spk)
            spikes = torch.stack(out)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "norse":
        if LIFBoxCell is None:
            return None
        torch.manual_seed(seed)
        cell = LIFRecurrentCell(n_in, n, p=LIFParameters(
            tau_syn_inv=torch.tensor(1.0), tau_mem_inv=torch.tensor(1.0 - BETA), v_leak=torch.tensor(0.0),
            v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0), method="super", alpha=torch.tensor(100.0)),
            dt=1.0)
        with torch.no_grad():
            cell.input_weights.mul_(GAIN)
        params = list(cell.parameters())

        def step() -> float:
            _clear(params)
            state, out = None, []
            for x_t in x.unbind(0):
                z, state = cell(x_t, state)
                out.append(z)
            spikes = torch.stack(out)
            spikes.sum().backward()
            return float(spikes.detach().mean())

        return step
    if lib == "spikingjelly":
        return None
    raise ValueError(lib)


def build(case: dict, lib: str) -> Callable[[], float] | None:
    if case["kind"] == "ff":
        return ff_step(lib, case["n"], case["batch"], case["steps"])
    return rec_step(lib, case["n"], case["n_in"], case["batch"], case["steps"])


def tiny(case: dict) -> dict:
    """The same case at a tiny size (to page in code before a memory measurement)."""
    if case["kind"] == "ff":
        return {"kind": "ff", "n": 16, "batch": 2, "steps": 5}
    return {"kind": "rec", "n": 16, "n_in": 4, "batch": 2, "steps": 5}


# ----------------------------------------------------------------------- memory






def measure_peak(case: dict, lib: str, threads: int) -> float | None:
    """Peak resident memory (MB) of one forward + backward above the resident size before it."""
    torch.set_num_threads(threads)
    warm = build(tiny(case), lib)
    if warm is None:
        return None
    warm()
    fn = build(case, lib)
    del warm
    gc.collect()
    if not reset_hwm():  # pragma: no cover - not Linux
        return None
    rss0 = rss_now_mb()
    fn()
    hwm = vm_hwm_mb()
    return None if hwm is None else max(0.0, hwm - rss0)


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    return env


def spawn_peak(case: dict, lib: str, threads: int) -> float | None:
    args = [sys.executable, __file__, "--worker", json.dumps(case), lib, str(threads)]
    proc = subprocess.run(args, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"memory worker {lib} {case} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


# ----------------------------------------------------------------------- cases
def run_case(case: dict, threads: int, warmup: int, rounds: int, in_process: bool) -> dict:
    """Interleaved medians of every variant of one case on ``threads`` threads, and peaks."""
    torch.set_num_threads(threads)
    fns = {lib: build(case, lib) for lib in VARIANTS}
    rates = {lib: fn() for lib, fn in fns.items() if fn is not None and lib != "floor"}
    med = interleaved_medians({k: f for k, f in fns.items() if f is not None}, warmup, rounds)
    del fns
    gc.collect()
    out: dict = {}
    for lib in VARIANTS:
        ms = med.get(lib)
        out[f"{lib}_ms"] = None if ms is None else round(ms, 3)
    for lib in VARIANTS:
        if med.get(lib) is None:
            peak = None
        elif in_process:
            peak = measure_peak(case, lib, threads)
            torch.set_num_threads(threads)
        else:
            peak = spawn_peak(case, lib, threads)
        out[f"{lib}_peak_mb"] = None if peak is None else round(peak, 1)
    floor = med["floor"]
    out["bionn_over_floor"] = round(med["bionn"] / floor, 3)
    for lib in LIBS:
        out[f"{lib}_beyond_floor_ms"] = None if med.get(lib) is None else round(med[lib] - floor, 3)
    out["spike_rate"] = {k: round(v, 4) for k, v in rates.items()}
    out["targets"] = targets(out)
    out["threads"] = threads
    out["rounds"] = rounds
    return out


def targets(r: dict) -> dict:
    """The issue's targets for one case (null where a peer is absent)."""
    b, bb = r["bionn_ms"], r["bionn_beyond_floor_ms"]
    peers = [p for p in LIBS[1:] if r[f"{p}_ms"] is not None]
    t: dict = {"faster_than_every_peer": all(b < r[f"{p}_ms"] for p in peers)}
    s = r["snntorch_beyond_floor_ms"]
    t["beyond_floor_at_most_tenth_of_snntorch"] = None if s is None else bb <= 0.1 * s
    t["beyond_floor_below_norse"] = None if r["norse_ms"] is None else bb < r["norse_beyond_floor_ms"]
    t["beyond_floor_below_spikingjelly"] = (None if r["spikingjelly_ms"] is None
                                            else bb < r["spikingjelly_beyond_floor_ms"])
    t["within_1_2x_floor"] = r["bionn_over_floor"] <= 1.2
    return t


def cases(quick: bool) -> dict[str, dict]:
    if quick:
        return {"ff_32": {"kind": "ff", "n": 32, "batch": 2, "steps": 8},
                "recurrent_40": {"kind": "rec", "n": 40, "n_in": 8, "batch": 2, "steps": 8}}
    return {"ff_512": {"kind": "ff", "n": 512, **FF},
            "ff_4096": {"kind": "ff", "n": 4096, **FF},
            f"recurrent_{REC['n']}": {"kind": "rec", **REC}}


def schedule(case: dict, quick: bool) -> tuple[int, int]:
    if quick:
        return 1, 2
    if case["kind"] == "ff" and case["n"] >= 2048:
        return 1, 3
    return 2, 11


NOTES = {
    "loss": "sum of the output spikes (hidden spikes for recurrent); forward + backward, no optimizer step",
    "neuron": "LIF V_t = 0.9 V_{t-1} + c u_t, threshold 1, subtract reset (Norse recurrent: value reset), "
              "delta synapse; bionn: SpikingLayer/SpikingRNN LIF synapse='delta' reset='subtract' "
              "t_refractory=0, fast-sigmoid surrogate",
    "snntorch": "Leaky / RLeaky with spike_grad=fast_sigmoid() (its default is ATan); Linear over the whole "
                "sequence, then a Python loop over cur.unbind(0)",
    "norse": "LIFBoxCell (feedforward) and LIFRecurrentCell (dt*tau_syn_inv=1: delta synapse); Python loop "
             "over unbind(0)",
    "spikingjelly": "LIFNode multi-step (fused CPU operator), soft reset, detach_reset, sigmoid surrogate; "
                    "no recurrent LIF: null",
    "dale": "only bionn applies Dale's law (80% E); snnTorch RLeaky and Norse LIFRecurrentCell have none "
            "and train an unconstrained recurrent matrix",
    "peak_mb": "peak RSS during one forward+backward minus RSS before it, fresh subprocess per "
               "case/library/thread setting (model and input excluded)",
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few steps (smoke run)")
    parser.add_argument("--only", nargs="*", help="run only these cases (e.g. ff_512 recurrent_1024)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(cases(args.quick)))
    if unknown and not args.worker:
        parser.error(f"--only: unknown case(s) {unknown}; the cases{' with --quick' * args.quick} "
                     f"are {list(cases(args.quick))}")
    if args.worker:
        case, lib, threads = json.loads(args.worker[0]), args.worker[1], int(args.worker[2])
        peak = measure_peak(case, lib, threads)
        print(json.dumps({"peak_mb": peak}))
        return {"peak_mb": peak}

    old_threads = torch.get_num_threads()
    n_all = all_threads()
    result: dict = {"benchmark": "snn_train"}
    threads_all: dict = {}
    try:
        for name, case in cases(args.quick).items():
            if args.only and name not in args.only:
                continue
            warmup, rounds = schedule(case, args.quick)
            for threads, dest in ((1, result), (n_all, threads_all)):
                t0 = time.perf_counter()
                r = run_case(case, threads, warmup, rounds, in_process=args.quick)
                dest[name] = r
                print(f"{name} threads={threads} ({time.perf_counter() - t0:.0f} s)", flush=True)
                print(f"  {'variant':<14}{'ms':>11}{'beyond floor':>14}{'peak MB':>10}", flush=True)
                for lib in VARIANTS:
                    ms = r[f"{lib}_ms"]
                    if ms is None:
                        print(f"  {lib:<14}{'n/a':>11}")
                        continue
                    bf = "" if lib == "floor" else f"{r[f'{lib}_beyond_floor_ms']:.2f}"
                    pk = r[f"{lib}_peak_mb"]
                    print(f"  {lib:<14}{ms:>11.2f}{bf:>14}{'n/a' if pk is None else f'{pk:.1f}':>10}",
                          flush=True)
                print(f"  bionn / floor {r['bionn_over_floor']:.3f}; targets {r['targets']}", flush=True)
    finally:
        torch.set_num_threads(old_threads)
    result["threads_all"] = threads_all
    result["threads"] = 1
    result["threads_all_count"] = n_all
    result["config"] = {"ff": {"batch": FF["batch"], "steps": FF["steps"]}, "recurrent": REC,
                        "beta": BETA, "dt_ms": 1.0, "quick": bool(args.quick)}
    result["versions"] = {
        "torch": torch.__version__,
        "bionn": package_version("bionn"),
        "snntorch": package_version("snntorch", snntorch is not None),
        "norse": package_version("norse", LIFBoxCell is not None),
        "spikingjelly": package_version("spikingjelly", sj_neuron is not None),
    }
    result["notes"] = dict(NOTES)
    if args.quick:
        result["notes"]["peak_mb"] = "--quick: measured in-process (not meaningful)"
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
