"""Synapse kinetics against their formulas and fine-step solutions, and their effect in networks."""

import math

import pytest
import torch

from bionn.circuits.connect import all_to_all, fixed_prob, from_matrix, one_to_one
from bionn.plasticity import STDP
from bionn.spiking import LIF, Network, Projection
from bionn.spiking.synapse_models import (
    AMPA,
    NMDA,
    STP,
    SYNAPSE_MODELS,
    Alpha,
    AMPAExponential,
    DualExponential,
    Exponential,
    GABAa,
    GABAaExponential,
    GABAaWangBuzsaki,
    GABAb,
    GapJunction,
    VoltageJump,
)

F64 = torch.float64


def _drive(proj, spike_steps, n_steps, dt, pre=None):
    """Step a projection's synapse by hand; return the state after every step."""
    syn = proj.synapse
    st = syn.initial_state(proj, 1, None, F64)
    out = []
    for i in range(n_steps):
        sp = torch.full((1, proj.n_pre), i in spike_steps)
        st = syn.update(st, proj, sp, dt, pre or {}, {}, proj.weight)
        out.append(st)
    return out


def _rk4(f, y0, t_end, h, t_on):
    """Fine-step RK4 of dy/dt = f(y, on), pulse on for t < t_on; samples every 0.1 ms."""
    y, samples = list(y0), {}
    n = int(round(t_end / h))
    every = int(round(0.1 / h))
    for i in range(n):
        on = i * h < t_on - h / 2
        k1 = f(y, on)
        k2 = f([a + 0.5 * h * b for a, b in zip(y, k1, strict=True)], on)
        k3 = f([a + 0.5 * h * b for a, b in zip(y, k2, strict=True)], on)
        k4 = f([a + h * b for a, b in zip(y, k3, strict=True)], on)
        y = [
            a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4)
            for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4, strict=True)
        ]
        if (i + 1) % every == 0:
            samples[(i + 1) // every] = list(y)
    return samples


# ---------------------------------------------------------------------------------------------
# linear kinetics: dual exponential, alpha
# ---------------------------------------------------------------------------------------------
def test_dual_exponential_follows_the_analytic_kernel_and_peak():
    w, dt = 0.7, 0.01
    p = Projection("A", "B", one_to_one(1), DualExponential(), weight=w)
    states = _drive(p, {0}, 800, dt)
    s = torch.tensor([float(st["s"]) for st in states], dtype=F64)
    t = torch.arange(800, dtype=F64) * dt  # the jump enters x at the end of step 0 (t = 0)
    kernel = w * 1.5 * (torch.exp(-t / 3.0) - torch.exp(-t))
    assert torch.allclose(s, kernel, atol=1e-6)
    assert float(s[0]) == 0.0  # s starts rising one step after the jump
    t_peak = 1.5 * math.log(3.0)
    assert abs(float(t[s.argmax()]) - t_peak) <= dt
    assert float(s.max()) == pytest.approx(w / math.sqrt(3.0), rel=1e-4)


def test_alpha_peaks_at_tau_with_tau_over_e():
    tau, dt = 2.0, 0.01
    p = Projection("A", "B", one_to_one(1), Alpha(tau_decay=tau), weight=1.0)
    s = torch.tensor([float(st["s"]) for st in _drive(p, {0}, 1000, dt)], dtype=F64)
    t = torch.arange(1000, dtype=F64) * dt
    assert torch.allclose(s, t * torch.exp(-t / tau), atol=1e-6)
    assert abs(float(t[s.argmax()]) - tau) <= dt
    assert float(s.max()) == pytest.approx(tau / math.e, rel=1e-5)


@pytest.mark.parametrize(
    "syn",
    [
        DualExponential(tau_1=0.5, tau_2=7.0, peak_normalize=True),
        Alpha(tau_decay=5.0, peak_normalize=True),
    ],
)
def test_peak_normalize_gives_a_peak_of_w(syn):
    p = Projection("A", "B", one_to_one(1), syn, weight=2.0)
    s = torch.tensor([float(st["s"]) for st in _drive(p, {0}, 3000, 0.01)])
    assert float(s.max()) == pytest.approx(2.0, rel=1e-4)


def test_linear_kinetics_sum_over_pre_neurons_per_post():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.5, 0.0]])
    conn, vals = from_matrix(w)
    p = Projection("A", "B", conn, DualExponential(), weight=vals)
    st = p.synapse.initial_state(p, 2, None, F64)
    spikes = torch.tensor([[True, False, True], [False, True, False]])
    st = p.synapse.update(st, p, spikes, 0.1, {}, {}, p.weight)
    expected = spikes.to(F64) @ w.T.to(F64)
    assert torch.allclose(st["x"], expected)


# ---------------------------------------------------------------------------------------------
# Markov kinetics (per presynaptic neuron)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [AMPA, GABAa])
def test_markov_receptors_match_a_fine_step_solution(cls):
    syn = cls()
    alpha, beta, T, t_dur = (float(getattr(syn, k)) for k in ("alpha", "beta", "T", "T_duration"))
    p = Projection("A", "B", one_to_one(1), syn)
    states = _drive(p, {0}, 60, 0.1)
    ref = _rk4(
        lambda y, on: [alpha * (T if on else 0.0) * (1 - y[0]) - beta * y[0]],
        [0.0],
        6.0,
        1e-3,
        t_dur,
    )
    for k in (1, 3, 5, 6, 10, 30, 60):
        assert float(states[k - 1]["s"]) == pytest.approx(ref[k][0], abs=1e-6), k
    assert 0.0 < float(states[4]["s"]) < 1.0


def test_markov_pulse_lasts_t_duration_and_restarts_on_each_spike():
    p = Projection("A", "B", one_to_one(1), AMPA())  # T_duration 0.5 ms = 5 steps at dt 0.1
    states = _drive(p, {0, 20}, 40, 0.1)
    s = [float(st["s"]) for st in states]
    rising = [i for i in range(1, 40) if s[i] > s[i - 1]]
    assert rising == [1, 2, 3, 4, 20, 21, 22, 23, 24]  # step 0 rises from 0 too


def test_per_pre_state_is_delivered_through_the_weights():
    w = torch.tensor([[0.3, 1.0], [2.0, 0.0], [0.0, 0.5]])
    conn, vals = from_matrix(w)
    p = Projection("A", "B", conn, GABAa(), weight=vals)
    st = p.synapse.initial_state(p, 1, None, F64)
    st = p.synapse.update(st, p, torch.tensor([[True, False]]), 0.1, {}, {}, p.weight)
    st = p.synapse.update(st, p, torch.tensor([[False, True]]), 0.1, {}, {}, p.weight)
    assert st["s"].shape == (1, 2)
    value = p.synapse.value(st, p, {}, {}, p.weight)
    assert torch.allclose(value, st["s"] @ w.T.to(F64), atol=1e-7)


def test_gabab_matches_a_fine_step_solution():
    syn = GABAb()
    k1, k2, k3, k4, kd, T, t_dur = (
        float(getattr(syn, k)) for k in ("k1", "k2", "k3", "k4", "kd", "T", "T_duration")
    )
    p = Projection("A", "B", one_to_one(1), syn)
    states = _drive(p, {0}, 200, 0.1)

    def f(y, on):
        r, g = y
        return [k3 * (T if on else 0.0) * (1 - r) - k4 * r, k1 * r - k2 * g]

    ref = _rk4(f, [0.0, 0.0], 20.0, 1e-3, t_dur)
    for k in (1, 2, 3, 4, 10, 100, 200):
        assert float(states[k - 1]["R"]) == pytest.approx(ref[k][0], rel=1e-5, abs=1e-12), k
        assert float(states[k - 1]["G"]) == pytest.approx(ref[k][1], rel=1e-5, abs=1e-12), k
    g = float(states[-1]["G"])
    assert float(syn.value(states[-1], p, {}, {}, p.weight)) == pytest.approx(
        g**4 / (g**4 + kd), rel=1e-6
    )


def test_nmda_kinetics_match_a_fine_step_solution():
    syn = NMDA()
    p = Projection("A", "B", one_to_one(1), syn)
    states = _drive(p, {0}, 300, 0.1)
    # the spike's x jump at t = 0 drives s over the first step
    ref = _rk4(
        lambda y, on: [-y[0] / 2.0, -y[1] / 100.0 + 0.5 * y[0] * (1 - y[1])],
        [1.0, 0.0],
        30.0,
        1e-3,
        0.0,
    )
    for k in (1, 2, 5, 20, 100, 300):
        assert float(states[k - 1]["x"]) == pytest.approx(ref[k][0], rel=1e-5), k
        assert float(states[k - 1]["s"]) == pytest.approx(ref[k][1], rel=2e-3), k


@pytest.mark.parametrize("v", [-80.0, -60.0, -20.0, 0.0, 30.0])
def test_nmda_mg_block(v):
    got = float(NMDA().post_factor({"V": torch.tensor([[v]], dtype=F64)}))
    assert got == pytest.approx(1.0 / (1.0 + 1.2 / 3.57 * math.exp(-0.062 * v)), rel=1e-6)


def test_nmda_current_is_blocked_at_rest_and_drives_toward_E():
    def run(v_rest):
        net = Network(
            {
                "P": LIF(1, initial={"V": 19.99}),
                "Q": LIF(1, V_rest=v_rest, V_reset=v_rest, V_th=1e3, initial={"V": v_rest}),
            },
            [Projection("P", "Q", one_to_one(1), NMDA(), weight=5.0)],
            inputs={"P": 200.0},
        )
        return net.run(20.0, dt=0.1, record={"Q": ["V"]}, progress=False).traces["Q.V"] - v_rest

    depol_blocked, depol_open = float(run(-80.0).max()), float(run(-20.0).max())
    assert 0.0 < depol_blocked < depol_open
    above = run(10.0)  # above E = 0 the NMDA current pulls V down toward E, not past it
    assert float(above.min()) < 0.0 and float(above.min()) > -10.0 - 1e-4


def test_wang_buzsaki_gabaa_exact_step_from_pre_voltage():
    p = Projection("I", "I", one_to_one(3), GABAaWangBuzsaki())
    st = p.synapse.initial_state(p, 1, None, F64)
    st["s"] = torch.tensor([[0.2, 0.5, 0.9]], dtype=F64)
    v = torch.tensor([[-6.0, 1.0, 4.0]], dtype=F64)
    new = p.synapse.update(st, p, torch.zeros(1, 3, dtype=torch.bool), 0.04, {"V": v}, {}, p.weight)
    T = 1 / (1 + torch.exp(-v / 2))
    rate = 12 * T + 0.1
    s_inf = 12 * T / rate
    expected = s_inf + (st["s"] - s_inf) * torch.exp(-rate * 0.04)
    assert torch.allclose(new["s"], expected, atol=1e-7)
    with pytest.raises(ValueError, match="delay"):
        q = Projection("I", "I", one_to_one(3), GABAaWangBuzsaki(), delay=0.5)
        q.initial_state(1, None, F64)


# ---------------------------------------------------------------------------------------------
# short-term plasticity
# ---------------------------------------------------------------------------------------------
def test_stp_jump_arithmetic_bpmodels_order():
    U, tf, td, ts, w, dt, n = 0.2, 100.0, 50.0, 8.0, 2.0, 0.1, 30
    p = Projection("A", "B", one_to_one(1), STP(U=U, tau_f=tf, tau_d=td, tau_s=ts), weight=w)
    states = _drive(p, {0, n}, n + 1, dt)
    first, second = states[0], states[n]
    assert float(first["u"]) == pytest.approx(U)
    assert float(first["x"]) == pytest.approx(1 - U)
    assert float(first["s"]) == pytest.approx(w * U)
    # second spike n steps later, from u- = U, x- = 1 - U (state after spike 1)
    u_d = U * math.exp(-n * dt / tf)  # decay over n steps (the jump step decays too)
    x_d = 1 + (1 - U - 1) * math.exp(-n * dt / td)
    u_minus = U * math.exp(-(n - 1) * dt / tf)
    x_minus = 1 + (-U) * math.exp(-(n - 1) * dt / td)
    u_new = u_d + U * (1 - u_minus)
    assert float(second["u"]) == pytest.approx(u_new, rel=1e-6)
    assert float(second["x"]) == pytest.approx(x_d - u_new * x_minus, rel=1e-6)
    s_expected = w * U * math.exp(-n * dt / ts) + w * u_new * x_minus
    assert float(second["s"]) == pytest.approx(s_expected, rel=1e-6)


def test_stp_brainpy2_order_starts_at_U_and_releases_after_depletion():
    U, w = 0.3, 1.0
    p = Projection("A", "B", one_to_one(1), STP(U=U, order="brainpy2"), weight=w)
    st = p.synapse.initial_state(p, 1, None, F64)
    assert float(st["u"]) == pytest.approx(U)
    st = p.synapse.update(st, p, torch.tensor([[True]]), 0.1, {}, {}, p.weight)
    u = U * math.exp(-0.1 / 1500) + U * (1 - U)
    x = 1 - u
    assert float(st["u"]) == pytest.approx(u, rel=1e-6)
    assert float(st["s"]) == pytest.approx(w * u * x, rel=1e-6)
    with pytest.raises(ValueError, match="order"):
        STP(order="brian")


def _released_per_spike(syn, n_spikes=6, period=200):
    p = Projection("A", "B", one_to_one(1), syn, weight=1.0)
    spike_steps = {k * period for k in range(n_spikes)}
    states = _drive(p, spike_steps, n_spikes * period, 0.1)
    decay = math.exp(-0.1 / float(syn.tau_s))
    out = []
    for k in sorted(spike_steps):
        before = float(states[k - 1]["s"]) if k else 0.0
        out.append(float(states[k]["s"]) - before * decay)
    return out


def test_stp_facilitation_and_depression_regimes():
    fac = _released_per_spike(STP(U=0.05, tau_f=1000.0, tau_d=20.0))
    dep = _released_per_spike(STP(U=0.6, tau_f=10.0, tau_d=1000.0))
    assert all(b > a for a, b in zip(fac, fac[1:], strict=False)), fac
    assert all(b < a for a, b in zip(dep, dep[1:], strict=False)), dep
    assert fac[-1] > 3 * fac[0] and dep[-1] < 0.5 * dep[0]


# ---------------------------------------------------------------------------------------------
# outputs in a network: conductance sign, gap junctions, voltage jumps, delays
# ---------------------------------------------------------------------------------------------
def _spiker(n=1):
    return LIF(n, initial={"V": 19.99})  # spikes in step 0, then every ~6 ms with input 100


@pytest.mark.parametrize(
    "syn,weight",
    [(GABAa(), 2000.0), (Exponential(tau_decay=5.0, g_max=1.0), 50.0), (GABAaExponential(), 100.0)],
)
def test_inhibitory_conductance_pulls_toward_E_and_never_below(syn, weight):
    net = Network(
        {"P": _spiker(), "Q": LIF(1, V_th=1e3)},
        [Projection("P", "Q", one_to_one(1), syn, weight=weight, output="conductance", E=-80.0)],
        inputs={"P": 100.0},
    )
    v = net.run(60.0, dt=0.1, record={"Q": ["V"]}, progress=False).traces["Q.V"]
    assert float(v.min()) < -60.0  # strongly pulled toward E = -80
    assert float(v.min()) >= -80.0 - 1e-4  # ... but never past it


def test_excitatory_conductance_saturates_at_E():
    net = Network(
        {"P": _spiker(), "Q": LIF(1, V_rest=-65.0, V_reset=-65.0, V_th=1e3, initial={"V": -65.0})},
        [Projection("P", "Q", one_to_one(1), AMPAExponential(), weight=500.0)],
        inputs={"P": 100.0},
    )
    v = net.run(40.0, dt=0.1, record={"Q": ["V"]}, progress=False).traces["Q.V"]
    assert -5.0 < float(v.max()) <= 1e-4


def test_gap_junction_pulls_voltages_together():
    tau, g, T = 10.0, 1.0, 5.0

    def run(with_gap):
        grp = LIF(2, V_th=1e3, initial={"V": torch.tensor([10.0, -10.0])})
        projs = (
            [Projection("A", "A", all_to_all(2, 2, autapses=False), GapJunction(), weight=g)]
            if with_gap
            else []
        )
        v = (
            Network({"A": grp}, projs)
            .run(T, dt=0.01, record={"A": ["V"]}, progress=False)
            .traces["A.V"]
        )
        return v[0, -1]

    v_gap, v_free = run(True), run(False)
    diff_gap, diff_free = float(v_gap[0] - v_gap[1]), float(v_free[0] - v_free[1])
    assert diff_free == pytest.approx(20.0 * math.exp(-T / tau), rel=1e-4)
    assert diff_gap == pytest.approx(20.0 * math.exp(-(1 + 2 * g) * T / tau), rel=0.02)
    assert float(v_gap.sum()) == pytest.approx(
        0.0, abs=1e-4
    )  # symmetric coupling conserves the mean


def test_gap_junction_current_output_matches_formula():
    p = Projection("A", "B", all_to_all(2, 3), GapJunction(g_max=1.0), weight=0.5, output="current")
    v_pre = torch.tensor([[0.0, 10.0, -5.0]])
    v_post = torch.tensor([[1.0, -2.0]])
    i = p.synapse.value({}, p, {"V": v_pre}, {"V": v_post}, p.weight)
    expected = 0.5 * (v_pre.sum(1, keepdim=True) - 3 * v_post)
    assert torch.allclose(i, expected)


def _jump_trace(delay):
    net = Network(
        {"P": _spiker(), "Q": LIF(1, tau=1e9, V_th=1e3)},
        [Projection("P", "Q", one_to_one(1), VoltageJump(), weight=2.5, delay=delay)],
        inputs={"P": 100.0},
    )
    res = net.run(3.0, dt=0.1, record={"Q": ["V"]}, progress=False)
    assert res.spikes["P"].step.tolist() == [0]
    return res.traces["Q.V"][0, :, 0]


def test_voltage_jump_adds_the_weight_and_delays_shift_arrival():
    v0 = _jump_trace(0.0)
    assert float(v0[0]) == pytest.approx(2.5, abs=1e-5)  # same step as the presynaptic spike
    v1 = _jump_trace(1.0)
    assert float(v1[9]) == pytest.approx(0.0, abs=1e-6)
    assert float(v1[10]) == pytest.approx(2.5, abs=1e-5)  # 1 ms / 0.1 ms = 10 steps later
    with pytest.raises(ValueError, match="voltage"):
        Projection("P", "Q", one_to_one(1), VoltageJump(), output="current").initial_state(
            1, None, F64
        )


def test_delay_shifts_kinetics_by_delay_over_dt_steps():
    def first_rise(delay):
        net = Network(
            {"P": _spiker(), "Q": LIF(1)},
            [Projection("P", "Q", one_to_one(1), AMPA(), delay=delay, name="pq")],
            inputs={"P": 100.0},
        )
        st = net.initial_state(1, dt=0.1)
        for i in range(20):
            st = net.step(st, i * 0.1, 0.1)
            if float(st["pq"]["syn.s"]) > 0:
                return i
        return None

    assert first_rise(0.0) == 0
    assert first_rise(0.7) == 7


# ---------------------------------------------------------------------------------------------
# every model in a network (batch, ranges, plastic per-trial weights)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SYNAPSE_MODELS))
@pytest.mark.parametrize("plastic", [False, True])
def test_every_model_runs_in_a_network(name, plastic):
    g = torch.Generator().manual_seed(1)
    cls = SYNAPSE_MODELS[name]
    rule = STDP(w_max=5.0) if plastic else None
    conn = fixed_prob(3, 4, 0.7, generator=g)
    proj = Projection(
        "P",
        "Q",
        conn,
        cls(),
        weight=1.0,
        plasticity=rule,
        pre_range=(1, 5),
        post_range=(0, 3),
        name="pq",
    )
    net = Network(
        {"P": LIF(6, initial={"V": (0.0, 20.0)}), "Q": LIF(3, initial={"V": (0.0, 20.0)})},
        [proj],
        inputs={"P": 40.0, "Q": 15.0},
    )
    res = net.run(15.0, dt=0.1, batch=2, record={"Q": ["V"]}, generator=g, progress=False)
    assert torch.isfinite(res.traces["Q.V"]).all()
    if plastic:
        w = res.state["pq"]["w"]
        assert w.shape == (2, 4, proj.targets.shape[1])
        assert float(w.max()) <= 5.0 and float(w.min()) >= 0.0


def test_registry_and_defaults():
    assert {
        "Exponential",
        "DualExponential",
        "Alpha",
        "AMPA",
        "GABAa",
        "GABAb",
        "NMDA",
        "STP",
        "GapJunction",
        "VoltageJump",
        "GABAaWangBuzsaki",
        "AMPAExponential",
    } <= set(SYNAPSE_MODELS)
    assert SYNAPSE_MODELS["Exponential"] is Exponential
    expected = {
        "DualExponential": ("current", {"tau_1": 1.0, "tau_2": 3.0, "g_max": 0.2}),
        "Alpha": ("current", {"tau_decay": 2.0, "g_max": 0.2}),
        "AMPA": (
            "conductance",
            {"alpha": 0.98, "beta": 0.18, "T": 0.5, "T_duration": 0.5, "g_max": 0.42},
        ),
        "GABAa": (
            "conductance",
            {"alpha": 0.53, "beta": 0.18, "T": 1.0, "T_duration": 1.0, "g_max": 0.04},
        ),
        "NMDA": (
            "conductance",
            {
                "g_max": 0.15,
                "alpha": 0.062,
                "beta": 3.57,
                "cc_Mg": 1.2,
                "tau_decay": 100.0,
                "tau_rise": 2.0,
                "a": 0.5,
            },
        ),
        "STP": ("current", {"U": 0.15, "tau_f": 1500.0, "tau_d": 200.0, "tau_s": 8.0}),
        "GapJunction": ("gap", {"g_max": 1.0}),
        "VoltageJump": ("voltage", {"g_max": 1.0}),
        "GABAaWangBuzsaki": ("conductance", {"alpha": 12.0, "beta": 0.1}),
        "AMPAExponential": ("conductance", {"tau_decay": 2.0, "g_max": 0.1}),
    }
    for name, (output, params) in expected.items():
        syn = SYNAPSE_MODELS[name]()
        assert syn.default_output == output, name
        for k, v in params.items():
            assert float(getattr(syn, k)) == pytest.approx(v), (name, k)
    assert (NMDA.default_E, GABAa.default_E, GABAb.default_E, GABAaWangBuzsaki.default_E) == (
        0.0,
        -80.0,
        -95.0,
        -75.0,
    )
    with pytest.raises(ValueError, match="tau_1"):
        DualExponential(tau_1=0.0)
    with pytest.raises(TypeError, match="tau"):
        AMPA(tau=3.0)
