"""Neuron models: every model runs, and each matches a formula or a reference value.

Reference values are from the BrainPy-Models notes (Brian2 2.9 / numpy
re-implementation). Spike times here are the end of the step in which the
threshold was reached, ``(step + 1) * dt``; Brian2 reports the start of that
step, so Brian2's values appear here one ``dt`` later.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bionn.spiking.base import Drive, StepContext
from bionn.spiking.neurons import (
    GIF,
    HH,
    LIF,
    NEURONS,
    AdExIF,
    AdQuaIF,
    ExpIF,
    HindmarshRose,
    Izhikevich,
    MorrisLecar,
    PoissonGroup,
    QuaIF,
    TraubHH,
    WangBuzsakiHH,
    WilsonCowan,
)

# constant drive that makes each model active, and a dt it is stable at
ACTIVE = {
    "LIF": (25.0, 0.1), "ALIF": (40.0, 0.1), "ExpIF": (3.0, 0.1), "AdExIF": (20.0, 0.1), "QuaIF": (10.0, 0.1),
    "AdQuaIF": (10.0, 0.1), "GIF": (1.5, 0.1), "Izhikevich": (10.0, 0.1), "HH": (10.0, 0.05),
    "WangBuzsakiHH": (1.2, 0.05), "TraubHH": (500.0, 0.05), "MorrisLecar": (100.0, 0.1),
    "HindmarshRose": (3.0, 0.05), "WilsonCowan": (1.0, 0.1), "PoissonGroup": (0.0, 0.1),
}


def make(name: str, n: int, **kw):
    cls = NEURONS[name]
    return cls(n, rate=200.0, **kw) if cls is PoissonGroup else cls(n, **kw)


def simulate(model, current, dt: float, steps: int, batch: int = 1, dtype=torch.float64,
             state=None, generator=None):
    """Step ``model`` under a constant current; returns (final state, spike times per trial)."""
    model = model.to(dtype)
    s = state if state is not None else model.initial_state(batch, dtype=dtype)
    cur = torch.as_tensor(current, dtype=dtype)
    cur = cur.reshape(-1, 1).expand(batch, model.n) if cur.dim() else cur.expand(batch, model.n)
    drive = Drive(current=cur)
    times: list[list[float]] = [[] for _ in range(batch)]
    ctx = StepContext(0.0, dt, generator)
    for i in range(steps):
        s = model(s, drive, dt, ctx)
        if model.spiking:
            for b in s["spike"][:, 0].nonzero().flatten().tolist():
                times[b].append(round((i + 1) * dt, 6))
    return s, times


def steady_rate(times: list[float], skip: int = 1) -> float:
    t = times[skip:]
    return 1000.0 * (len(t) - 1) / (t[-1] - t[0])


# -- every model --------------------------------------------------------------


def test_registry_lists_every_model():
    assert set(NEURONS) == set(ACTIVE)
    assert all(NEURONS[k].__name__ == k for k in NEURONS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_runs_without_nan(name, dtype):
    current, dt = ACTIVE[name]
    model = make(name, 2)
    s, _ = simulate(model, current, dt, 400, batch=3, dtype=dtype,
                    generator=torch.Generator().manual_seed(0))
    for k, v in s.items():
        assert v.shape == (3, 2), k
        if v.is_floating_point():
            assert v.dtype == dtype, k
            assert torch.isfinite(v).all(), k
    for var in model.variables:
        assert var in s
    if model.spiking:
        assert s["spike"].dtype == torch.bool


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_unknown_parameter_is_named(name):
    with pytest.raises(TypeError, match="bogus_param"):
        make(name, 1, bogus_param=1.0)


@pytest.mark.parametrize("name", [k for k in sorted(ACTIVE) if "V" in NEURONS[k].variables])
def test_conductance_drive_pushes_V_toward_E(name):
    model = make(name, 1).double()
    s = model.initial_state(1, dtype=torch.float64)
    v = s["V"]
    g = 10.0 if name == "TraubHH" else 0.5
    base = model.derivatives(s, Drive())["V"]
    up = model.derivatives(s, Drive(current=g * (v + 50.0), conductance=g))["V"]
    down = model.derivatives(s, Drive(current=g * (v - 50.0), conductance=g))["V"]
    assert (up > base).all() and (down < base).all()
    if "exp_euler" in model.methods:
        a0 = model.linear(s, Drive())["V"]
        a1 = model.linear(s, Drive(current=g * (v + 50.0), conductance=g))["V"]
        assert (a1 < a0).all()


def test_noise_is_euler_maruyama_and_seeded():
    lif = LIF(1000, noise=2.0, V_th=1e9).double()
    s = lif.initial_state(2, dtype=torch.float64)
    s1 = lif(s, Drive(), 0.1, StepContext(0.0, 0.1, torch.Generator().manual_seed(3)))
    # one step from V = V_rest with no drive: V = (noise / tau) sqrt(dt) N(0, 1)
    std = float(s1["V"].std())
    assert abs(std - 2.0 / 10.0 * math.sqrt(0.1)) < 0.005
    assert torch.equal(lif(s, Drive(), 0.1, StepContext(0.0, 0.1, torch.Generator().manual_seed(3)))["V"],
                       s1["V"])
    assert not LIF(1)._noisy


def test_initial_value_strings_are_checked():
    with pytest.raises(ValueError, match="b\\*V"):
        Izhikevich(1, initial={"u": "nonsense"})
    with pytest.raises(TypeError, match="q"):
        HH(1, initial={"q": 0.0})


# -- LIF ----------------------------------------------------------------------


def test_lif_isi_matches_analytic():
    # ISI = tau ln((I + 5) / (I - 20)) + t_ref: I = 21 -> 26.6 Hz, I = 25 -> 43.6 Hz (t_ref 5)
    dt = 0.1
    _, times = simulate(LIF(1), [21.0, 25.0], dt, 4000, batch=2)
    for trial, current in enumerate([21.0, 25.0]):
        t_free = 10.0 * math.log((current + 5.0) / (current - 20.0))
        analytic = t_free + 5.0
        isi = np.diff(times[trial])
        # discrete: V is held for t_ref / dt steps, then threshold is reached at the end of
        # the first step whose end is >= the continuous crossing time
        assert np.allclose(isi, 5.0 + math.ceil(t_free / dt - 1e-9) * dt)
        assert abs(isi.mean() - analytic) <= dt
    assert abs(1000.0 / (10 * math.log(26.0) + 5) - 26.6) < 0.05
    assert abs(1000.0 / (10 * math.log(6.0) + 5) - 43.6) < 0.05


def test_refractory_holds_V():
    lif = LIF(1).double()
    s = lif.initial_state(1, dtype=torch.float64)
    drive = Drive(current=torch.full((1, 1), 50.0, dtype=torch.float64))
    while not s["spike"].any():
        s = lif(s, drive, 0.1)
    for _ in range(50):
        s = lif(s, drive, 0.1)
        assert float(s["V"]) == -5.0 and not s["spike"].any()
    s = lif(s, drive, 0.1)
    assert float(s["V"]) > -5.0
    exp_if = ExpIF(1).double()
    s = exp_if.initial_state(1, dtype=torch.float64)
    drive = Drive(current=torch.full((1, 1), 10.0, dtype=torch.float64))
    while not s["spike"].any():
        s = exp_if(s, drive, 0.1)
    held = 0
    while float(s["V"]) == -68.0:
        s = exp_if(s, drive, 0.1)
        held += 1
    assert held == 17 + 1  # 1.7 ms refractory, then the step that leaves V_reset


# -- quadratic and exponential IF: ISI from the integral of dt = tau dV / f(V) ----


def test_quaif_isi_matches_arctan_formula():
    # tau dV/dt = a0 (V - V_rest)(V - V_c) + I = a0 (x^2 + k^2), x = V - (V_rest + V_c)/2
    current, a0, tau = 10.0, 0.07, 10.0
    delta = 7.5
    k = math.sqrt(current / a0 - delta ** 2)
    x_th, x_reset = -30.0 + 57.5, -68.0 + 57.5
    isi = tau / (a0 * k) * (math.atan(x_th / k) - math.atan(x_reset / k))
    _, times = simulate(QuaIF(1, method="rk4"), current, 0.01, 7000)
    assert abs(np.diff(times[0])[-1] - isi) < 0.02  # one step


def test_expif_isi_matches_quadrature():
    current, dt = 3.0, 0.01
    v = np.linspace(-68.0, -30.0, 400001)
    f = (-(v + 65.0) + 3.48 * np.exp((v + 59.9) / 3.48) + 10.0 * current) / 10.0
    t_free = float(np.sum((1 / f[1:] + 1 / f[:-1]) / 2 * np.diff(v)))
    _, times = simulate(ExpIF(1, method="rk4"), current, dt, 3000)
    isi = np.diff(times[0])
    assert len(isi) >= 2
    assert abs(isi[-1] - (t_free + 1.7)) <= 2 * dt


# -- adaptation and resets -------------------------------------------------------


@pytest.mark.parametrize("cls, jump", [(AdExIF, "b"), (AdQuaIF, "b"), (Izhikevich, "d")])
def test_adaptation_jumps_at_spike(cls, jump):
    model = cls(1).double()
    var = "u" if cls is Izhikevich else "w"
    s = model.initial_state(1, dtype=torch.float64)
    s["V"] = s["V"] * 0 + float(model.V_th) - 0.01
    drive = Drive(current=torch.full((1, 1), 50.0, dtype=torch.float64))
    integrated = model.integrate(dict(s), drive, 0.1)
    new = model(s, drive, 0.1)
    assert new["spike"].all()
    reset = model.c if cls is Izhikevich else model.V_reset
    assert float(new["V"]) == float(reset)
    expected = float(integrated[var] + getattr(model, jump))
    assert float(new[var]) == pytest.approx(expected, abs=1e-12)


def test_adex_update_order():
    drive = Drive(current=torch.full((1, 1), 20.0, dtype=torch.float64))
    seq, joint = AdExIF(1).double(), AdExIF(1, order="joint").double()
    assert seq.order == "sequential" and AdExIF(1, method="rk4").order == "joint"
    s = seq.initial_state(1, dtype=torch.float64)
    s["w"] = s["w"] + 3.0
    s["V"] = s["V"] + 10.0
    # sequential: w first (from the old V), then V with the new w
    w_new = 3.0 + 0.1 * (1.0 * 10.0 - 3.0) / 30.0
    v_seq = -55.0 + 0.1 * (-10.0 + 3.48 * math.exp((-55.0 + 59.9) / 3.48) - w_new + 20.0) / 10.0
    v_joint = -55.0 + 0.1 * (-10.0 + 3.48 * math.exp((-55.0 + 59.9) / 3.48) - 3.0 + 20.0) / 10.0
    # parameters are stored in the default dtype (float32: V_T = -59.9 is rounded)
    assert float(seq(s, drive, 0.1)["V"]) == pytest.approx(v_seq, abs=1e-6)
    assert float(joint(s, drive, 0.1)["V"]) == pytest.approx(v_joint, abs=1e-6)
    assert abs(v_seq - v_joint) > 1e-4
    with pytest.raises(ValueError, match="order"):
        AdExIF(1, order="backwards")


def test_gif_spikes_against_old_threshold():
    # a = 5 makes V_th jump from -50 to -40 within one step while V crosses -50
    gif = GIF(1, a=5.0).double()
    s = gif.initial_state(1, dtype=torch.float64)
    s["V"] = s["V"] * 0 - 50.05
    drive = Drive(current=torch.full((1, 1), 1.5, dtype=torch.float64))
    integrated = gif.integrate(dict(s), drive, 0.1)
    assert float(integrated["V"]) > -50.0 and float(integrated["V_th"]) > float(integrated["V"])
    new = gif(s, drive, 0.1)
    assert new["spike"].all() and float(new["V"]) == -70.0
    # reset: I2 <- R2 I2 + A2, V_th <- max(V_th_reset, V_th)
    gif2 = GIF(1, A2=2.0, V_th_reset=-45.0).double()
    s = gif2.initial_state(1, dtype=torch.float64)
    s["V"] = s["V"] * 0 - 49.0
    new = gif2(s, Drive(), 0.1)
    assert new["spike"].all() and float(new["I2"]) == 2.0 and float(new["V_th"]) == -45.0


# -- Izhikevich ------------------------------------------------------------------


def test_izhikevich_rs_reference():
    # Brian2 / numpy (u0 = b V0, Euler, dt 0.1, I = 10): first spikes 3.3, 27.0, 72.1 ms
    # (start of step), 22.17 Hz steady
    _, times = simulate(Izhikevich(1), 10.0, 0.1, 10000)
    assert times[0][:3] == [3.4, 27.1, 72.2]
    assert abs(steady_rate(times[0]) - 22.17) < 0.03
    # bpmodels' u0 = 1: first spike at 46.6 ms (+ one step here), same steady rate
    _, times = simulate(Izhikevich(1, initial={"u": 1.0}), 10.0, 0.1, 1000)
    assert times[0][0] == 46.7


@pytest.mark.parametrize("preset, rate, tol", [("FS", 130.0, 2.0), ("tonic spiking", 133.0, 2.5),
                                               ("RS", 22.17, 1.0)])
def test_izhikevich_preset_rates(preset, rate, tol):
    model = Izhikevich(1, preset=preset)
    _, times = simulate(model, 10.0, 0.1, 2000 if rate > 50 else 6000)
    assert abs(steady_rate(times[0][-12:]) - rate) < tol


def test_izhikevich_presets():
    assert Izhikevich.PRESETS["tonic spiking"] == (0.02, 0.40, -65.0, 2.0)  # not the paper's
    assert Izhikevich.PRESETS["RZ"] != Izhikevich.PRESETS["resonator"]
    assert len({k for k in Izhikevich.PRESETS if k.islower() or " " in k}) >= 20
    m = Izhikevich(1, preset="FS", d=3.0)
    assert (float(m.a), float(m.d)) == (pytest.approx(0.1), 3.0)
    with pytest.raises(ValueError, match="unknown preset 'XX'"):
        Izhikevich(1, preset="XX")
    s = Izhikevich(2, b=torch.tensor([0.2, 0.25])).initial_state(1)
    assert torch.allclose(s["u"], torch.tensor([[-13.0, -16.25]]))


# -- Hodgkin-Huxley family -------------------------------------------------------


def test_hh_rk4_reference_spike_times():
    # Brian2 RK4 dt 0.01, I = 10: first spikes 2.18, 16.57, 30.73 ms (start of step);
    # 70.70 Hz over 1 s
    _, times = simulate(HH(1, method="rk4"), 10.0, 0.01, 3100)
    assert np.allclose(times[0][:3], [2.19, 16.58, 30.74], atol=0.015)
    isi = times[0][2] - times[0][1]
    assert abs(1000.0 / isi - 70.7) < 0.3  # second ISI is within 0.2 % of the steady one


def test_hh_exp_euler_rates():
    # joint exponential Euler at dt 0.1: 67.6 Hz (Brian2); bpmodels' order (gates first)
    # stays close to the fine-dt rate (70.7 Hz)
    _, times = simulate(HH(1, order="joint"), [10.0], 0.1, 2500)
    assert abs(steady_rate(times[0]) - 67.6) < 0.5
    model = HH(1)
    assert model.order == "sequential" and model.method == "exp_euler"
    _, times = simulate(model, [10.0], 0.1, 2500)
    assert abs(steady_rate(times[0]) - 70.7) < 1.0


def test_hh_refuses_unstable_dt():
    with pytest.raises(ValueError, match=r"HH with method='euler' is unstable at dt=0.1 ms"):
        HH(1, method="euler").check_dt(0.1)
    with pytest.raises(ValueError, match="rk4"):
        HH(1, method="rk4").check_dt(0.1)
    HH(1, method="rk4").check_dt(0.05)
    HH(1).check_dt(0.1)  # exponential Euler is stable
    with pytest.raises(ValueError, match="unstable"):
        TraubHH(1, method="euler").check_dt(0.1)


def test_hh_no_reset_and_crossing():
    hh = HH(1).double()
    s = hh.initial_state(1, dtype=torch.float64)
    s["V"] = s["V"] * 0 + 19.99
    s["m"] = s["m"] * 0 + 0.9
    new = hh(s, Drive(), 0.01)
    assert new["spike"].all() and float(new["V"]) > 20.0  # no reset
    assert not hh(new, Drive(), 0.01)["spike"].any()  # still above: no second spike


def test_hh_gates_and_limits():
    # the 0/0 points of the rate functions take their limits
    from bionn.spiking.neurons import _hh_rates, _traub_rates, _wb_rates

    v = torch.tensor([-40.0, -55.0, -40.0 + 1e-4], dtype=torch.float64)
    am, _, _, _, an, _ = _hh_rates(v)
    assert float(am[0]) == 1.0 and float(an[1]) == pytest.approx(0.1)
    assert float(am[2]) == pytest.approx(1.0, abs=1e-4)
    _, _, _, _, an, _ = _wb_rates(torch.tensor([-34.0]))
    assert float(an) == pytest.approx(0.1)
    vt = torch.tensor(-63.0)
    am, bm, _, _, an, _ = _traub_rates(torch.tensor([-50.0, -23.0, -48.0]), vt)
    assert (float(am[0]), float(bm[1]), float(an[2])) == pytest.approx((1.28, 1.4, 0.16))
    # steady state: gate derivatives vanish at fixed V; initial="steady" uses it
    ss = HH.steady_state(-65.0)
    hh = HH(1, initial={"m": "steady", "h": "steady", "n": "steady"})
    s = hh.initial_state(1)
    for g in "mhn":
        assert float(s[g]) == pytest.approx(float(ss[g]))
        assert abs(float(hh.derivatives(s, Drive())[g])) < 1e-6
    assert float(ss["m"]) == pytest.approx(0.0529, abs=1e-3)
    assert float(ss["h"]) == pytest.approx(0.596, abs=1e-3)
    assert float(ss["n"]) == pytest.approx(0.3177, abs=1e-3)
    # clipping
    s = HH(1).initial_state(1)
    s["m"] = s["m"] + 2.0
    assert float(HH(1)(s, Drive(), 0.01)["m"]) <= 1.0
    assert float(HH(1, clip_gates=False)(s, Drive(), 0.01)["m"]) > 1.0


def test_wang_buzsaki_and_traub():
    wb = WangBuzsakiHH(1, initial={"h": "steady", "n": "steady"})
    s = wb.initial_state(1)
    d = wb.derivatives(s, Drive())
    assert abs(float(d["h"])) < 1e-6 and abs(float(d["n"])) < 1e-6
    _, times = simulate(WangBuzsakiHH(1, V_th=0.0), 1.2, 0.04, 2500)
    assert len(times[0]) >= 3 and np.all(np.diff(times[0]) > 5.0)
    traub = TraubHH(1)
    s = traub.initial_state(1)
    assert float(s["V"]) == -60.0
    assert float(s["h"]) == pytest.approx(float(traub.steady_state(-60.0)["h"]))
    # silent at Brian2's E_L = -65 without input; fires under a 500 pA current
    _, quiet = simulate(TraubHH(1, E_L=-65.0), 0.0, 0.1, 1000)
    _, active = simulate(TraubHH(1, E_L=-65.0), 500.0, 0.1, 1000)
    assert quiet[0] == [] and len(active[0]) >= 3


# -- models without reset, rate model, Poisson ------------------------------------


def test_morris_lecar_formula_and_crossing():
    ml = MorrisLecar(1).double()
    s = ml.initial_state(1, dtype=torch.float64)
    v, w = -20.0, 0.02
    m_inf = 0.5 * (1 + math.tanh((v + 1.2) / 18.0))
    w_inf = 0.5 * (1 + math.tanh((v - 2.0) / 30.0))
    rate = 0.04 * math.cosh((v - 2.0) / 60.0)
    dv = (-4.4 * m_inf * (v - 130) - 8 * w * (v + 84) - 2 * (v + 60) + 100.0) / 20.0
    d = ml.derivatives(s, Drive(current=100.0))
    assert float(d["V"]) == pytest.approx(dv) and float(d["W"]) == pytest.approx((w_inf - w) * rate)
    _, times = simulate(ml, 100.0, 0.1, 3000)
    assert len(times[0]) >= 2  # upward crossings of V_th = 10


def test_hindmarsh_rose_formula_and_bursting():
    hr = HindmarshRose(1).double()
    s = hr.initial_state(1, dtype=torch.float64)
    d = hr.derivatives(s, Drive(current=3.0))
    v = -1.6
    assert float(d["V"]) == pytest.approx(-10 - v ** 3 + 3 * v * v - 0 + 3.0)
    assert float(d["y"]) == pytest.approx(1 - 5 * v * v + 10)
    assert float(d["z"]) == pytest.approx(0.0, abs=1e-6)
    _, times = simulate(hr, 3.0, 0.05, 20000)
    assert len(times[0]) >= 5


def test_wilson_cowan_formula_and_fixed_point():
    wc = WilsonCowan(1).double()
    s = wc.initial_state(1, dtype=torch.float64)
    assert not wc.spiking and "spike" not in s

    def sig(x, a, th):
        return 1 / (1 + math.exp(-a * (x - th))) - 1 / (1 + math.exp(a * th))

    d = wc.derivatives(s, Drive(current=0.5))
    se = sig(12 * 0.1 - 4 * 0.05 + 0.5, 1.2, 2.8)
    si = sig(13 * 0.1 - 11 * 0.05 + 0.0, 1.0, 4.0)
    assert float(d["a_e"]) == pytest.approx(-0.1 + (1 - 0.1) * se)
    assert float(d["a_i"]) == pytest.approx(-0.05 + (1 - 0.05) * si)
    s, _ = simulate(wc, 0.5, 0.1, 2000)
    d = wc.derivatives(s, Drive(current=0.5))
    assert abs(float(d["a_e"])) < 1e-6 and abs(float(d["a_i"])) < 1e-6
    with pytest.raises(ValueError, match="current drive only"):
        wc.derivatives(s, Drive(current=0.5, conductance=torch.ones(1, 1)))


def test_poisson_group_rate_and_seed():
    p = PoissonGroup(1000, rate=torch.full((1000,), 50.0))
    ctx = StepContext(0.0, 0.1, torch.Generator().manual_seed(0))
    s = p.initial_state(2)
    total = torch.zeros(2, 1000)
    for _ in range(1000):
        s = p(s, Drive(), 0.1, ctx)
        total += s["spike"]
    expected = 1000 * 100e-3 * 50.0  # per trial
    assert abs(float(total.sum(1).mean()) - expected) < 5 * math.sqrt(expected)
    a = p(p.initial_state(1), Drive(), 0.1, StepContext(0.0, 0.1, torch.Generator().manual_seed(4)))["spike"]
    b = p(p.initial_state(1), Drive(), 0.1, StepContext(0.0, 0.1, torch.Generator().manual_seed(4)))["spike"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="exceeds 1"):
        PoissonGroup(1, rate=20000.0).check_dt(0.1)
    with pytest.raises(ValueError, match="rate"):
        PoissonGroup(1, rate=-1.0)


def test_initial_values_consistent_with_rest():
    for cls in (ExpIF, QuaIF, AdExIF, AdQuaIF):
        m = cls(1)
        s = m.initial_state(1)
        assert float(s["V"]) == float(m.V_rest)
        assert not m(s, Drive(), 0.1)["spike"].any()
    # bpmodels' V0 = 0 is far above threshold: immediate spike
    s = ExpIF(1, initial={"V": 0.0}).initial_state(1)
    assert ExpIF(1)(s, Drive(), 0.1)["spike"].all()
