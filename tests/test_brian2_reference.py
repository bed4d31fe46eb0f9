"""Spike times of single neurons against Brian2 with the same equations, method and dt.

Brian2 runs with the numpy code-generation target (no compiler, no compile
time); equations are unitless with rates per ms (``/ms``), constants equal to
the bionn defaults (bpmodels 0.2.3). Models are built with float64 parameters.

Step conventions, checked here:

- Both simulators update the state from the old values, then test the
  threshold and reset within the same step. Brian2's ``SpikeMonitor`` reports
  the *start* of that step, bionn the *end*, ``(step + 1) * dt``: identical
  dynamics give bionn time = Brian2 time + dt, exactly (to the float rounding
  of the step index).
- Refractoriness: bionn (like bpmodels' ``t - t_last_spike <= t_ref``) holds V
  for ``t_ref / dt`` steps *after* the spike step; Brian2's ``(unless
  refractory)`` counts the spike step as the first refractory step and holds
  ``t_ref / dt - 1`` further steps. Brian2 with ``refractory = t_ref + dt``
  reproduces bionn; with ``t_ref`` each ISI is one step shorter.
- HH-type spikes are upward crossings: Brian2 ``threshold="v >= 20"`` with
  ``refractory="v >= 20"`` (no new spike while V stays above).

Agreement is exact to the step in all cases below (float64 on both sides);
the assertions allow one step, since an operation-order rounding difference
can move a threshold crossing that falls within ~1e-12 of a step boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

brian2 = pytest.importorskip(
    "brian2", reason="Brian2 is an optional test extra (pip install bionn[test])")

from brian2 import ms  # noqa: E402

from bionn.spiking.base import Drive  # noqa: E402
from bionn.spiking.neurons import HH, LIF, AdExIF, ExpIF, Izhikevich  # noqa: E402

pytestmark = [
    pytest.mark.reference,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:brian2"),  # pyparsing API renames
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pyparsing"),
]

HH_EQS = """
dv/dt = (-120*m**3*h*(v - 50) - 36*n**4*(v + 77) - 0.03*(v + 54.387) + I)/ms : 1
dm/dt = (alpha_m*(1 - m) - beta_m*m)/ms : 1
dh/dt = (alpha_h*(1 - h) - beta_h*h)/ms : 1
dn/dt = (alpha_n*(1 - n) - beta_n*n)/ms : 1
alpha_m = 0.1*(v + 40)/(1 - exp(-(v + 40)/10)) : 1
beta_m = 4*exp(-(v + 65)/18) : 1
alpha_h = 0.07*exp(-(v + 65)/20) : 1
beta_h = 1/(1 + exp(-(v + 35)/10)) : 1
alpha_n = 0.01*(v + 55)/(1 - exp(-(v + 55)/10)) : 1
beta_n = 0.125*exp(-(v + 65)/80) : 1
"""


@pytest.fixture(autouse=True)
def _float64_parameters():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module", autouse=True)
def _numpy_target():
    old = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = "numpy"
    yield
    brian2.prefs.codegen.target = old


def brian_spikes(eqs: str, duration: float, dt: float, method: str, threshold: str,
                 reset: str | None = None, refractory=False, init=None, **namespace) -> np.ndarray:
    brian2.start_scope()
    brian2.defaultclock.dt = dt * ms
    group = brian2.NeuronGroup(1, eqs, threshold=threshold, reset=reset, refractory=refractory,
                               method=method, namespace=namespace)
    for name, value in (init or {}).items():
        setattr(group, name, value)
    mon = brian2.SpikeMonitor(group)
    brian2.run(duration * ms, namespace=namespace)
    return np.asarray(mon.t / ms)


def bionn_spikes(model, current: float, duration: float, dt: float) -> np.ndarray:
    s = model.initial_state(1, dtype=torch.float64)
    drive = Drive(current=torch.full((1, 1), current, dtype=torch.float64))
    steps = []
    for i in range(int(round(duration / dt))):
        s = model(s, drive, dt)
        if s["spike"][0, 0]:
            steps.append(i)
    return np.asarray(steps)


def brian_steps(times: np.ndarray, dt: float) -> np.ndarray:
    """Brian2 times (start of the spike step) as step indices."""
    return np.round(times / dt).astype(int)


def assert_same_steps(ours: np.ndarray, theirs: np.ndarray, min_spikes: int, tol: int = 1):
    assert len(ours) >= min_spikes
    assert len(ours) == len(theirs), (ours, theirs)
    assert np.abs(ours - theirs).max() <= tol, (ours, theirs)


def test_lif_exact():
    dt, t_ref = 0.1, 5.0
    eqs = "dv/dt = (-(v - 0) + I)/tau : 1 (unless refractory)"
    kw = dict(threshold="v >= 20", reset="v = -5", tau=10 * ms, I=25.0)
    ours = bionn_spikes(LIF(1), 25.0, 200.0, dt)
    same = brian_steps(brian_spikes(eqs, 200.0, dt, "exact", refractory=(t_ref + dt) * ms, **kw),
                       dt)
    assert_same_steps(ours, same, 8, tol=0)
    plain = brian_steps(brian_spikes(eqs, 200.0, dt, "exact", refractory=t_ref * ms, **kw), dt)
    k = min(len(ours), len(plain))
    # Brian2's refractory=t_ref holds one step less: the offset grows by one step per spike
    assert np.array_equal(ours[:k] - plain[:k], np.arange(k))


def test_izhikevich_rs_euler():
    dt = 0.1
    eqs = """dv/dt = (0.04*v**2 + 5*v + 140 - u + I)/ms : 1
             du/dt = a*(b*v - u)/ms : 1"""
    theirs = brian_spikes(eqs, 300.0, dt, "euler", "v >= 30", "v = c; u += d",
                          init={"v": -65.0, "u": 0.2 * -65.0}, a=0.02, b=0.2, c=-65.0, d=8.0,
                          I=10.0)
    assert np.allclose(theirs[:3], [3.3, 27.0, 72.1])  # the reference notes' values
    assert_same_steps(bionn_spikes(Izhikevich(1), 10.0, 300.0, dt), brian_steps(theirs, dt), 6)


def test_adex_euler():
    dt = 0.1
    eqs = """dv/dt = (-(v - V_rest) + delta_T*exp((v - V_T)/delta_T) - R*w + R*I)/tau : 1
             dw/dt = (a*(v - V_rest) - w)/tau_w : 1"""
    theirs = brian_steps(brian_spikes(
        eqs, 300.0, dt, "euler", "v >= -30", "v = -68; w += 1", init={"v": -65.0},
        V_rest=-65.0, V_T=-59.9, delta_T=3.48, R=1.0, a=1.0, tau=10 * ms, tau_w=30 * ms, I=20.0,
    ), dt)
    # Brian2's Euler is joint; bpmodels' order (w first) lands on the same steps here
    assert_same_steps(bionn_spikes(AdExIF(1, order="joint"), 20.0, 300.0, dt), theirs, 10, tol=0)
    assert_same_steps(bionn_spikes(AdExIF(1), 20.0, 300.0, dt), theirs, 10)


def test_expif_euler_with_refractory():
    dt = 0.1
    eqs = "dv/dt = (-(v + 65) + 3.48*exp((v + 59.9)/3.48) + 10*I)/tau : 1 (unless refractory)"
    theirs = brian_steps(brian_spikes(
        eqs, 200.0, dt, "euler", "v >= -30", "v = -68", refractory=(1.7 + dt) * ms,
        init={"v": -65.0}, tau=10 * ms, I=3.0,
    ), dt)
    assert_same_steps(bionn_spikes(ExpIF(1), 3.0, 200.0, dt), theirs, 8)


@pytest.mark.parametrize("method, brian_method, dt, duration", [
    ("rk4", "rk4", 0.01, 35.0),
    ("exp_euler", "exponential_euler", 0.05, 100.0),
])
def test_hh(method, brian_method, dt, duration):
    theirs = brian_steps(brian_spikes(
        HH_EQS, duration, dt, brian_method, "v >= 20", refractory="v >= 20",
        init={"v": -65.0, "m": 0.05, "h": 0.6, "n": 0.32}, I=10.0,
    ), dt)
    # joint update and no clipping, as Brian2 (clipping never acts here anyway)
    model = HH(1, method=method, order="joint", clip_gates=False)
    ours = bionn_spikes(model, 10.0, duration, dt)
    assert_same_steps(ours, theirs, 3)
    if method == "rk4":
        assert np.allclose(theirs[:3] * dt, [2.18, 16.57, 30.73], atol=1e-6)


@pytest.mark.parametrize("t_ref", [2.0, 0.0])
def test_voltage_jumps_follow_brian2_refractoriness(t_ref):
    """Three driven LIF neurons (no refractory period) send 4 mV voltage jumps to a LIF
    with t_ref = 2 ms (or 0), arriving at many phases of its refractory period. bionn's one rule
    (V ignores every input in the spike step's reset and in the t_ref / dt held steps after
    it) gives the same spike steps as Brian2 with ``refractory = t_ref + dt`` (V read-only
    while refractory, ``on_pre`` before the reset)."""
    from bionn.circuits.connect import all_to_all
    from bionn.spiking import Network, Projection, VoltageJump

    dt, jump, duration = 0.1, 4.0, 300.0
    drives = [140.0, 181.0, 233.0]  # jumps arrive at every phase of the refractory period
    pre = LIF(3, t_refractory=0.0)
    post = LIF(1, t_refractory=t_ref)
    net = Network({"pre": pre, "post": post},
                  [Projection("pre", "post", all_to_all(1, 3), VoltageJump(), weight=jump)],
                  inputs={"pre": torch.tensor(drives), "post": 15.0}).double()
    res = net.run(duration, dt=dt, progress=False)
    ours = np.sort(res.spikes["post"].step.numpy())
    arrivals = set(res.spikes["pre"].step.tolist())
    held = round(t_ref / dt)
    # the cases the rule decides: a jump in the spike step, and in the last held step
    assert sum(int(s) in arrivals for s in ours) >= 5
    assert sum(int(s) + held in arrivals for s in ours) >= 5

    brian2.start_scope()
    brian2.defaultclock.dt = dt * ms
    eqs = "dv/dt = (-(v - 0) + I)/tau : 1 (unless refractory)\nI : 1"
    ns = {"tau": 10 * ms}
    b_pre = brian2.NeuronGroup(3, eqs, threshold="v >= 20", reset="v = -5", method="exact", namespace=ns)
    b_pre.I = drives
    b_post = brian2.NeuronGroup(1, eqs, threshold="v >= 20", reset="v = -5",
                                refractory=(t_ref + dt) * ms, method="exact", namespace=ns)
    b_post.I = 15.0
    syn = brian2.Synapses(b_pre, b_post, on_pre=f"v_post += {jump}")
    syn.connect()
    mon = brian2.SpikeMonitor(b_post)
    brian2.run(duration * ms, namespace=ns)
    theirs = brian_steps(np.asarray(mon.t / ms), dt)
    assert_same_steps(ours, theirs, 20, tol=0)
