"""Probe of the compiled-step route for issue 16: how fast is one generated loop per step?

Not a bionn backend and not used by the library: a hand-written C++ loop of the COBA
network's step (exact LIF step with conductances, refractory count, exponential
conductances, event-driven delivery from the projections' out-edge tables), built on first
use with ``torch.utils.cpp_extension.load_inline`` (compile time reported apart, cached by
PyTorch across runs), run on the same network and initial state as bionn's torch path, in
float64, one thread. It checks that the spikes are identical step by step (the loop follows
bionn's order of operations, including ``torch.lerp``'s two formulas), and times both.

What it answers: the cost of a step once per-step dispatch is gone (4,000 neurons), and
once the element work dominates (40,000 neurons), where this scalar loop (one ``exp`` per
neuron and step) competes with PyTorch's vectorised kernels. A generated path for every
model (one definition of the equations) would need vectorised code to win at scale.

Cases: ``coba_4k`` (2,000 steps) and ``coba_40k`` (1,000 steps), dt 0.1 ms. A second route,
PyTorch's own compiler: ``inductor`` times the step's element-wise part (conductance sum,
exact LIF step with refractoriness, synaptic decay; no delivery) eager and under
``torch.compile`` (default mode) at 4,000 and 40,000 neurons, float64.

JSON (last line): per case ``torch_us_per_step``, ``cpp_us_per_step``, ``speedup``,
``spikes``, ``identical``; ``inductor`` (per size ``eager_us``, ``compiled_us``,
``first_call_s``, ``identical``); ``compile_s``; ``threads``; ``torch``. ``--quick``: 400
neurons, 200 steps, no Inductor case.
Run: ``python benchmarks/compiled_step_probe.py`` (needs a C++ compiler).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

src = r"""
#include <torch/extension.h>
#include <cmath>
#include <vector>
static inline double lerp_(double s, double e, double w) { return w < 0.5 ? s + w * (e - s) : e - (e - s) * (1.0 - w); }
std::vector<int64_t> run(torch::Tensor V, torch::Tensor ref, torch::Tensor ge, torch::Tensor gi,
                         torch::Tensor tE, torch::Tensor wE, torch::Tensor tI, torch::Tensor wI,
                         int64_t n_e, int64_t steps, double dt, double tau, double v_rest, double v_reset,
                         double v_th, double I, double Ei, double de, double di, int64_t R) {
  auto v = V.data_ptr<double>(); auto rf = ref.data_ptr<double>();
  auto e = ge.data_ptr<double>(); auto in = gi.data_ptr<double>();
  auto te = tE.data_ptr<int64_t>(); auto we = wE.data_ptr<double>();
  auto ti = tI.data_ptr<int64_t>(); auto wi = wI.data_ptr<double>();
  int64_t n = V.size(1), KE = tE.size(1), KI = tI.size(1);
  std::vector<int64_t> out; std::vector<int64_t> fired; fired.reserve(n);
  for (int64_t s = 0; s < steps; ++s) {
    fired.clear();
    for (int64_t i = 0; i < n; ++i) {
      double cond = e[i] + in[i];
      double cur = I + in[i] * Ei;
      double leak = cond + 1.0;
      double vinf = (cur + v_rest) / leak;
      double old = v[i];
      double nv = lerp_(vinf, old, std::exp(leak * (-dt / tau)));
      double r = rf[i] < 0 ? 0 : (rf[i] > 1 ? 1 : rf[i]);
      nv = lerp_(nv, old, r);
      bool f = nv >= v_th;
      v[i] = f ? v_reset : nv;
      double nr = rf[i] - 1.0; if (nr < 0) nr = 0; rf[i] = nr + (f ? (double)R : 0.0);
      if (f) { fired.push_back(i); out.push_back(s); out.push_back(i); }
    }
    for (int64_t i = 0; i < n; ++i) { e[i] *= de; in[i] *= di; }
    for (int64_t j : fired) {
      if (j < n_e) { for (int64_t k = 0; k < KE; ++k) { int64_t t = te[j * KE + k]; if (t < n) e[t] += we[j * KE + k]; } }
      else { int64_t jj = j - n_e; for (int64_t k = 0; k < KI; ++k) { int64_t t = ti[jj * KI + k]; if (t < n) in[t] += wi[jj * KI + k]; } }
    }
  }
  return out;
}
"""



def build() -> tuple[object, float]:
    from torch.utils.cpp_extension import load_inline

    t0 = time.perf_counter()
    mod = load_inline("bionn_coba_probe", cpp_sources=src, functions=["run"], extra_cflags=["-O3"],
                      verbose=False)
    return mod, time.perf_counter() - t0


def case(mod: object, n: int, steps: int) -> dict:
    from bionn.spiking.networks import coba

    net = coba(n, generator=torch.Generator().manual_seed(1)).double()
    gen = torch.Generator().manual_seed(1)
    state = net.initial_state(1, dt=0.1, generator=gen, dtype=torch.float64)
    v0, r0 = state["P"]["V"].clone(), state["P"]["refractory"].clone()
    t = time.perf_counter()
    res = net.run(steps * 0.1, dt=0.1, state=state, generator=gen, progress=False, check_finite=False)
    t_torch = time.perf_counter() - t
    ours = res.spikes["P"]
    pe, pi = net.projections
    ge, gi = torch.zeros(1, n, dtype=torch.float64), torch.zeros(1, n, dtype=torch.float64)
    t = time.perf_counter()
    out = mod.run(v0, r0, ge, gi, pe.targets.contiguous(), pe.weight.contiguous(),
                  pi.targets.contiguous(), pi.weight.contiguous(), pe.n_pre, steps, 0.1, 20.0, -60.0,
                  -60.0, -50.0, 20.0, -80.0, math.exp(-0.1 / 5.0), math.exp(-0.1 / 10.0), 50)
    t_cpp = time.perf_counter() - t
    cs = torch.tensor(out, dtype=torch.long).reshape(-1, 2)
    same = (cs.shape[0] == ours.count() and torch.equal(cs[:, 0], ours.step)
            and torch.equal(cs[:, 1], ours.neuron))
    return {"n": n, "steps": steps, "torch_us_per_step": round(t_torch / steps * 1e6, 1),
            "cpp_us_per_step": round(t_cpp / steps * 1e6, 1), "speedup": round(t_torch / t_cpp, 2),
            "spikes": int(cs.shape[0]), "identical": bool(same)}


def elementwise_step(V: torch.Tensor, ref: torch.Tensor, ge: torch.Tensor, gi: torch.Tensor):
    """The COBA step without delivery, as bionn's torch path computes it."""
    from bionn.functional.spiking import lif_exact_step

    v, r, s = lif_exact_step(V, ref, 20.0 + gi * -80.0, ge + gi, v_rest=-60.0, v_reset=-60.0,
                             v_th=-50.0, r=1.0, tau=20.0, refractory_steps=50, dt=0.1)
    return v, r, s, ge * math.exp(-0.1 / 5.0), gi * math.exp(-0.1 / 10.0)


def inductor_case(n: int, calls: int = 300) -> dict:
    compiled = torch.compile(elementwise_step, dynamic=False)
    g = torch.Generator().manual_seed(0)
    args = (torch.randn(1, n, generator=g, dtype=torch.float64) * 5 - 55,
            torch.zeros(1, n, dtype=torch.float64), torch.rand(1, n, generator=g, dtype=torch.float64),
            torch.rand(1, n, generator=g, dtype=torch.float64))
    t = time.perf_counter()
    out_c = compiled(*args)
    first = time.perf_counter() - t
    same = all(torch.equal(a, b) for a, b in zip(out_c, elementwise_step(*args), strict=True))

    def per_call(f) -> float:
        for _ in range(20):
            f(*args)
        t = time.perf_counter()
        for _ in range(calls):
            f(*args)
        return round((time.perf_counter() - t) / calls * 1e6, 1)

    return {"eager_us": per_call(elementwise_step), "compiled_us": per_call(compiled),
            "first_call_s": round(first, 1), "identical": bool(same)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400 neurons, 200 steps (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    mod, compile_s = build()
    cases = {"coba_400": (400, 200)} if args.quick else {"coba_4k": (4000, 2000), "coba_40k": (40000, 1000)}
    result: dict = {"benchmark": "compiled_step_probe"}
    for name, (n, steps) in cases.items():
        result[name] = case(mod, n, steps)
        r = result[name]
        print(f"{name}: torch {r['torch_us_per_step']} us/step, C++ loop {r['cpp_us_per_step']} us/step, "
              f"identical spikes: {r['identical']}", file=sys.stderr)
    if not args.quick:
        result["inductor"] = {str(n): inductor_case(n) for n in (4000, 40000)}
    result.update(compile_s=round(compile_s, 1), threads=1, torch=torch.__version__, quick=bool(args.quick))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
