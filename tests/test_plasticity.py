"""Learning rules: exact STDP amounts, bounds, Oja's principal component, BCM's threshold."""

import math

import pytest
import torch

from bionn.circuits.connect import all_to_all, fixed_prob, one_to_one
from bionn.plasticity import BCM, PLASTICITY_RULES, STDP, Oja, PlasticityRule
from bionn.spiking import LIF, Exponential, Network, Projection

F64 = torch.float64
YES, NO = torch.tensor([[True]]), torch.tensor([[False]])


def _single(rule, weight=5.0):
    p = Projection("A", "B", one_to_one(1), Exponential(), weight=weight, plasticity=rule)
    return p, p.initial_state(1, None, F64)


def _pairing(rule, first, gap_steps, dt=0.1, weight=5.0):
    """A pre and a post spike, ``first`` ('pre'/'post') leading by gap_steps; the final weight."""
    p, ps = _single(rule, weight)
    for i in range(gap_steps + 5):
        pre = YES if (i == 0) == (first == "pre") and i in (0, gap_steps) else NO
        post = YES if (i == 0) == (first == "post") and i in (0, gap_steps) else NO
        ps = rule.update(ps, p, pre, post, dt, {}, {})
    return float(ps["w"][0, 0, 0])


@pytest.mark.parametrize("gap", [1, 10, 50])
def test_stdp_pre_before_post_potentiates_by_the_trace(gap):
    rule = STDP()
    w = _pairing(rule, "pre", gap)
    assert w == pytest.approx(5.0 + 0.5 * math.exp(-gap * 0.1 / 10.0), rel=1e-9)


@pytest.mark.parametrize("gap", [1, 10, 50])
def test_stdp_post_before_pre_depresses_by_the_trace(gap):
    rule = STDP(tau_t=20.0, delta_A_t=0.3)
    w = _pairing(rule, "post", gap)
    assert w == pytest.approx(5.0 - 0.3 * math.exp(-gap * 0.1 / 20.0), rel=1e-9)


def test_stdp_traces_decay_exactly_and_accumulate():
    rule = STDP(tau_s=5.0)
    p, ps = _single(rule)
    ps = rule.update(ps, p, YES, NO, 0.1, {}, {})
    ps = rule.update(ps, p, YES, NO, 0.1, {}, {})
    assert float(ps["rule.A_s"]) == pytest.approx(0.5 * math.exp(-0.1 / 5.0) + 0.5)
    assert float(ps["rule.A_t"]) == 0.0


def test_stdp_keeps_weights_in_bounds_and_leaves_padding_alone():
    g = torch.Generator().manual_seed(0)
    rule = STDP(delta_A_s=3.0, delta_A_t=3.0, w_min=0.5, w_max=4.0)
    p = Projection(
        "A", "B", fixed_prob(6, 5, 0.5, generator=g), Exponential(), weight=2.0, plasticity=rule
    )
    ps = p.initial_state(3, None, F64)
    lo = hi = False
    for _ in range(300):
        pre = torch.rand(3, 5, generator=g) < 0.2
        post = torch.rand(3, 6, generator=g) < 0.2
        ps = rule.update(ps, p, pre, post, 0.1, {}, {})
        w = ps["w"][:, p.edge_mask]
        assert float(w.min()) >= 0.5 and float(w.max()) <= 4.0
        lo, hi = lo or bool((w == 0.5).any()), hi or bool((w == 4.0).any())
    assert lo and hi  # both bounds were reached
    assert (ps["w"][:, ~p.edge_mask] == 0).all()


def test_stdp_song2000_parameters_and_no_bounds():
    rule = STDP.song2000()
    assert (rule.tau_s, rule.tau_t, rule.delta_A_s, rule.delta_A_t) == (16.8, 33.7, 0.96, 0.53)
    assert rule.w_min is None and rule.w_max is None
    w = _pairing(rule, "post", 1, weight=0.1)  # unbounded: may go negative
    assert w == pytest.approx(0.1 - 0.53 * math.exp(-0.1 / 33.7))


def test_stdp_in_a_network_changes_per_trial_weights_within_bounds():
    g = torch.Generator().manual_seed(3)
    rule = STDP(delta_A_s=0.05, delta_A_t=0.06, w_max=1.0)
    proj = Projection(
        "P",
        "Q",
        all_to_all(4, 6),
        Exponential(tau_decay=5.0, g_max=1.0),
        weight=0.5,
        plasticity=rule,
        name="pq",
    )
    net = Network(
        {"P": LIF(6, initial={"V": (0.0, 20.0)}), "Q": LIF(4, initial={"V": (0.0, 20.0)})},
        [proj],
        inputs={"P": torch.linspace(22.0, 40.0, 6), "Q": 21.0},
    )
    res = net.run(100.0, dt=0.1, batch=2, generator=g, progress=False)
    w = res.state["pq"]["w"]
    assert w.shape == (2, 6, 4)
    assert not torch.allclose(w, torch.full_like(w, 0.5))
    assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
    assert torch.equal(
        proj.weight, torch.full_like(proj.weight, 0.5)
    )  # the module's weights stay put


# ---------------------------------------------------------------------------------------------
# rate-based rules
# ---------------------------------------------------------------------------------------------
def test_oja_bounds_the_norm_and_finds_the_principal_component():
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[3.0, 1.2, 0.0], [1.2, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=F64)
    chol = torch.linalg.cholesky(cov)
    evals, evecs = torch.linalg.eigh(cov)
    pc = evecs[:, -1]
    rule = Oja(gamma=0.01)
    p = Projection(
        "X",
        "Y",
        all_to_all(1, 3),
        Exponential(),
        weight=torch.tensor([[0.1, -0.2, 0.05]]),
        plasticity=rule,
    )
    ps = p.initial_state(1, None, F64)
    norms = []
    for _ in range(3000):
        x = (chol @ torch.randn(3, generator=g, dtype=F64))[None]
        w = ps["w"][0, :, 0]
        y = (x[0] @ w)[None, None]
        ps = rule.update(ps, p, None, None, 1.0, {"r": x}, {"r": y})
        norms.append(float(ps["w"][0, :, 0].norm()))
    w = ps["w"][0, :, 0]
    assert max(norms) < 1.3
    assert float(w.norm()) == pytest.approx(1.0, abs=0.1)
    assert abs(float(w @ pc)) / float(w.norm()) > 0.98


def test_oja_exact_step_and_optional_bounds():
    for bounds, expected in (({}, -0.2), ({"w_min": 0.0}, 0.0)):
        rule = Oja(gamma=0.1, **bounds)
        p = Projection("X", "Y", one_to_one(1), Exponential(), weight=1.0, plasticity=rule)
        ps = p.initial_state(1, None, F64)
        # dw/dt = gamma (r_post r_pre - r_post^2 w) = 0.1 (2 - 4) = -0.2; dt = 6 -> w = -0.2
        ps = rule.update(
            ps, p, None, None, 6.0, {"r": torch.tensor([[1.0]])}, {"r": torch.tensor([[2.0]])}
        )
        assert float(ps["w"]) == pytest.approx(expected)


def test_bcm_first_step_is_neutral_then_follows_the_threshold():
    rule = BCM(learning_rate=0.01, w_max=10.0)
    p = Projection("X", "Y", one_to_one(1), Exponential(), weight=1.0, plasticity=rule)
    ps = p.initial_state(1, None, F64)
    r = lambda v: {"r": torch.tensor([[v]], dtype=F64)}  # noqa: E731
    ps = rule.update(ps, p, None, None, 1.0, r(2.0), r(3.0))
    assert float(ps["w"]) == 1.0 and float(ps["rule.theta"]) == 3.0  # theta = mean incl. this step
    ps = rule.update(ps, p, None, None, 1.0, r(2.0), r(5.0))
    # theta = (3 + 5) / 2 = 4; dw = 0.01 * 5 * (5 - 4) * 2 = 0.1
    assert float(ps["rule.theta"]) == pytest.approx(4.0)
    assert float(ps["w"]) == pytest.approx(1.1)
    ps = rule.update(ps, p, None, None, 1.0, r(2.0), r(1.0))
    # theta = (3 + 5 + 1) / 3 = 3; dw = 0.01 * 1 * (1 - 3) * 2 = -0.04
    assert float(ps["w"]) == pytest.approx(1.06)


def test_bcm_potentiates_above_threshold_and_depresses_below():
    def final_weight(post_rates, **kw):
        rule = BCM(learning_rate=1e-3, **{"w_max": 10.0, **kw})
        p = Projection("X", "Y", all_to_all(1, 2), Exponential(), weight=1.0, plasticity=rule)
        ps = p.initial_state(1, None, F64)
        for rp in post_rates:
            ps = rule.update(
                ps,
                p,
                None,
                None,
                1.0,
                {"r": torch.tensor([[1.0, 2.0]], dtype=F64)},
                {"r": torch.tensor([[rp]], dtype=F64)},
            )
        return ps["w"][0, :, 0]

    up = torch.linspace(1.0, 5.0, 200).tolist()
    down = up[::-1]
    w_up, w_down = final_weight(up), final_weight(down)
    assert (w_up > 1.0).all() and (w_down < 1.0).all()
    assert float(w_up[1] - 1.0) == pytest.approx(
        2 * float(w_up[0] - 1.0), rel=1e-6
    )  # proportional to r_pre
    # with a fast sliding threshold a step up potentiates, then the threshold catches up
    w_fast = final_weight([1.0] * 50 + [3.0] * 50, tau_theta=5.0)
    assert (w_fast > 1.0).all()
    assert float(final_weight([2.0] * 10, w_max=1.0, w_min=1.0)[0]) == 1.0


def test_rate_rules_leave_padding_alone_and_clip():
    g = torch.Generator().manual_seed(2)
    bounds = {"w_min": 0.5, "w_max": 1.5}
    for rule in (BCM(learning_rate=0.05, **bounds), Oja(gamma=0.05, **bounds)):
        p = Projection("A", "B", fixed_prob(5, 4, 0.5, generator=g), Exponential(), plasticity=rule)
        assert not bool(p.edge_mask.all())  # there is ELL padding
        ps = p.initial_state(2, None, F64)
        for _ in range(50):
            pre = {"r": 3 * torch.rand(2, 4, generator=g, dtype=F64)}
            post = {"r": 3 * torch.rand(2, 5, generator=g, dtype=F64)}
            ps = rule.update(ps, p, None, None, 1.0, pre, post)
        w = ps["w"]
        assert (w[:, ~p.edge_mask] == 0).all()
        assert float(w[:, p.edge_mask].min()) >= 0.5 and float(w[:, p.edge_mask].max()) <= 1.5
        assert not torch.allclose(w[:, p.edge_mask], torch.ones_like(w[:, p.edge_mask]))


def test_rates_from_spikes_are_filtered_spike_trains_in_hz():
    rule = BCM(learning_rate=0.0, tau_rate=50.0)
    p = Projection("A", "B", one_to_one(1), Exponential(), weight=1.0, plasticity=rule)
    ps = p.initial_state(1, None, F64)
    dt, period = 0.5, 40  # a spike every 20 ms: 50 Hz
    samples = []
    for i in range(4000):
        sp = YES if i % period == 0 else NO
        ps = rule.update(ps, p, sp, NO, dt, {}, {})
        if i >= 2000:
            samples.append(float(ps["rule.r_pre"]))
    assert sum(samples) / len(samples) == pytest.approx(50.0, rel=0.02)
    assert float(ps["rule.r_post"]) == 0.0


def test_rate_rules_need_a_rate_or_spikes():
    rule = Oja(rate_var="rate")
    p = Projection("A", "B", one_to_one(1), Exponential(), plasticity=rule)
    ps = p.initial_state(1, None, F64)
    with pytest.raises(KeyError, match="rate"):
        rule.update(ps, p, None, None, 0.1, {"V": torch.zeros(1, 1)}, {"rate": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="neither"):
        Oja().update(ps, p, None, None, 0.1, {"V": torch.zeros(1, 1)}, {"r": torch.zeros(1, 1)})


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: STDP(tau_s=0.0), "tau_s"),
        (lambda: STDP(tau_t=float("inf")), "tau_t"),
        (lambda: STDP(w_min=3.0, w_max=1.0), "w_min"),
        (lambda: BCM(tau_theta=-1.0), "tau_theta"),
        (lambda: BCM(tau_rate=0), "tau_rate"),
        (lambda: Oja(gamma="fast"), "gamma"),
        (lambda: Oja(rate_var=3), "rate_var"),
    ],
)
def test_parameters_are_validated(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_registry():
    assert PLASTICITY_RULES == {"STDP": STDP, "BCM": BCM, "Oja": Oja}
    assert all(issubclass(c, PlasticityRule) for c in PLASTICITY_RULES.values())
    assert "tau_s=10" in repr(STDP())
