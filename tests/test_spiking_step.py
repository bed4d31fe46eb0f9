"""The spiking step is pure: an explicit StepContext in, a new state out, no module writes.

* Stepping a network by hand with the same generator gives bitwise the spikes
  and the final state of ``Network.run`` (networks with Poisson sources, noise,
  delays, neuron ranges, short-term and STDP plasticity, and COBA).
* A network stepped by hand is unaffected by an earlier ``run`` with another
  generator (no module keeps the run's generator).
* No attribute of any submodule changes during a step or a run.
"""

import pytest
import torch

from bionn.circuits.connect import fixed_prob
from bionn.plasticity import STDP
from bionn.spiking import (
    LIF,
    STP,
    Drive,
    Exponential,
    Network,
    PoissonGroup,
    Projection,
    StepConstants,
    StepContext,
    VoltageJump,
)
from bionn.spiking.networks import coba

DT = 0.1


def poisson_stdp() -> Network:
    """Poisson sources into noisy LIF: exponential synapses with STDP, a delayed
    recurrent projection and a time-dependent input current."""
    g = torch.Generator().manual_seed(5)
    lif = LIF(40, V_rest=-60.0, V_reset=-60.0, V_th=-50.0, tau=20.0, initial={"V": (-60.0, -50.0)},
              noise=0.5)
    return Network(
        {"In": PoissonGroup(80, rate=40.0), "E": lif},
        [Projection("In", "E", fixed_prob(40, 80, 0.2, generator=g), Exponential(tau_decay=5.0, g_max=1.0),
                    weight=2.0, plasticity=STDP(w_max=5.0), name="ff"),
         Projection("E", "E", fixed_prob(40, 40, 0.1, generator=g), Exponential(tau_decay=5.0, g_max=1.0),
                    weight=1.0, delay=1.0, name="rec")],
        inputs={"E": lambda t: 4.0 + 0.02 * t},
    )


def ranges_stp_jump() -> Network:
    """Projections on neuron ranges, short-term plasticity and voltage jumps."""
    g = torch.Generator().manual_seed(6)
    return Network(
        {"P": PoissonGroup(30, rate=60.0),
         "Q": LIF(20, initial={"V": (0.0, 20.0)}, noise=2.0)},
        [Projection("P", "Q", fixed_prob(10, 20, 0.5, generator=g), STP(), weight=3.0,
                    pre_range=(5, 25), post_range=(0, 10), name="stp"),
         Projection("P", "Q", fixed_prob(10, 10, 0.5, generator=g), VoltageJump(), weight=2.0,
                    pre_range=(20, 30), post_range=(10, 20), delay=0.5, name="jump")],
        inputs={"Q": 12.0},
    )


def small_coba() -> Network:
    return coba(300, generator=torch.Generator().manual_seed(2))


NETWORKS = {"poisson_stdp": poisson_stdp, "ranges_stp_jump": ranges_stp_jump, "coba": small_coba}


def _hand(net: Network, n_steps: int, batch: int, generator: torch.Generator | None,
          how: str = "context", t_start: float = 0.0):
    """Step ``net`` by hand; returns (spikes per group as (trial, step, neuron) rows, final state)."""
    state = net.initial_state(batch, dt=DT, generator=generator)
    ctx = net.context(DT, t=t_start, generator=generator) if how == "context" else None
    rows: dict[str, list[torch.Tensor]] = {}
    for i in range(n_steps):
        t = t_start + i * DT
        if how == "context":
            state, events = net.step_events(state, ctx.at(t))
        elif how == "bare":  # no read-once constants: every model reads its parameters now
            state, events = net.step_events(state, StepContext(t, DT, generator))
        else:  # step(state, t, dt, generator=...), then the events from the state
            state = net.step(state, t, DT, generator=generator)
            events = {g: (s["spike"], *s["spike"].nonzero(as_tuple=True))
                      for g, s in state.items() if g in net.groups and "spike" in s}
        for g, (_, b, j) in events.items():
            rows.setdefault(g, []).append(torch.stack([b, torch.full_like(j, i), j], 1))
    spikes = {g: torch.cat(r) for g, r in rows.items()}
    return spikes, state


def _run_spikes(res) -> dict[str, torch.Tensor]:
    return {g: torch.stack([e.trial, e.step, e.neuron], 1) for g, e in res.spikes.items()}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for k in a[name]:
            x, y = a[name][k], b[name][k]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, k)
            assert torch.equal(x, y), f"{name}.{k} differs"


@pytest.mark.parametrize("how", ["context", "bare", "step"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_hand_stepping_is_bitwise_run(name, how):
    net = NETWORKS[name]()
    n_steps, batch = 300, 2
    res = net.run(n_steps * DT, dt=DT, batch=batch, generator=torch.Generator().manual_seed(11),
                  progress=False)
    spikes, state = _hand(net, n_steps, batch, torch.Generator().manual_seed(11), how)
    run_spikes = _run_spikes(res)
    assert run_spikes.keys() == spikes.keys()
    assert sum(int(s.shape[0]) for s in spikes.values()) > 0
    for g in spikes:
        assert torch.equal(run_spikes[g], spikes[g]), g
    _assert_same_state(res.state, state)


def test_continued_run_matches_hand_stepping_from_t_start():
    net = poisson_stdp()
    g = torch.Generator().manual_seed(3)
    first = net.run(10.0, dt=DT, generator=g, progress=False)
    second = net.run(10.0, dt=DT, generator=g, state=first.state, t_start=10.0, progress=False)
    g = torch.Generator().manual_seed(3)
    state = net.initial_state(1, dt=DT, generator=g)
    ctx = net.context(DT, generator=g)
    for i in range(200):
        state = net.step(state, ctx.at(i * DT))
    _assert_same_state(second.state, state)


@pytest.mark.parametrize("seeded", [True, False])
def test_hand_stepping_unaffected_by_an_earlier_run(seeded):
    net = poisson_stdp()

    def hand():
        if not seeded:  # generator None: the global RNG, never one a run left behind
            torch.manual_seed(1234)
        gen = torch.Generator().manual_seed(7) if seeded else None
        return _hand(net, 150, 2, gen, how="step")

    before_spikes, before_state = hand()
    net.run(20.0, dt=DT, batch=2, generator=torch.Generator().manual_seed(99), progress=False)
    after_spikes, after_state = hand()
    for g in before_spikes:
        assert torch.equal(before_spikes[g], after_spikes[g]), g
    _assert_same_state(before_state, after_state)
    assert not any("generator" in k for m in net.modules() for k in vars(m))


def _snapshot(net: Network) -> list:
    """Every submodule's attributes (containers copied one level) and tensor versions."""
    out = []
    for m in net.modules():
        attrs = {}
        for k, v in vars(m).items():
            if isinstance(v, dict):
                v = dict(v)
            elif isinstance(v, list):
                v = list(v)
            attrs[k] = v
        tensors = {k: (t, t._version) for k, t in [*m._parameters.items(), *m._buffers.items()]
                   if t is not None}
        out.append((m, attrs, tensors))
    return out


def _assert_unchanged(before: list, after: list) -> None:
    for (m, a0, t0), (_, a1, t1) in zip(before, after, strict=True):
        assert a0.keys() == a1.keys(), (type(m).__name__, a0.keys() ^ a1.keys())
        for k in a0:
            x, y = a0[k], a1[k]
            if isinstance(x, dict):
                assert x.keys() == y.keys() and all(x[i] is y[i] for i in x), (type(m).__name__, k)
            elif isinstance(x, list):
                assert len(x) == len(y) and all(p is q for p, q in zip(x, y, strict=True)), (type(m).__name__, k)
            else:
                assert x is y or x == y, (type(m).__name__, k)
        assert t0.keys() == t1.keys()
        for k, (t, v) in t0.items():
            assert t1[k][0] is t and t1[k][1] == v, (type(m).__name__, k, "modified in place")


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_step_writes_no_module_attribute(name):
    net = NETWORKS[name]()  # fresh: the very first step must not fill any cache either
    g = torch.Generator().manual_seed(0)
    state = net.initial_state(2, dt=DT, generator=g)
    before = _snapshot(net)
    for i in range(30):  # enough for spikes, delays and plasticity to act
        state = net.step(state, StepContext(i * DT, DT, g))
    ctx = net.context(DT, generator=g)
    for i in range(30, 60):
        state, _ = net.step_events(state, ctx.at(i * DT))
    _assert_unchanged(before, _snapshot(net))
    net.run(5.0, dt=DT, batch=2, generator=g, progress=False)
    _assert_unchanged(before, _snapshot(net))


def test_context_checks():
    net = small_coba()
    state = net.initial_state(1, dt=DT)
    ctx = net.context(DT)
    assert isinstance(ctx.constants, StepConstants) and ctx.constants.dt == DT
    with pytest.raises(ValueError, match="dt"):
        net.step(state, StepContext(0.0, 0.05, None, ctx.constants))
    with pytest.raises(TypeError, match="StepContext"):
        net.step(state, ctx, DT)
    with pytest.raises(TypeError, match="dt"):
        net.step(state, 0.0)
    assert ctx.at(1.5) == StepContext(1.5, DT, None, ctx.constants)


def test_group_draws_from_the_context_generator():
    p = PoissonGroup(500, rate=100.0)
    s = p.initial_state(2)

    def draw(seed):
        return p(s, Drive(), DT, StepContext(0.0, DT, torch.Generator().manual_seed(seed)))["spike"]

    assert torch.equal(draw(4), draw(4))
    assert not torch.equal(draw(4), draw(5))
    lif = LIF(500, noise=2.0, V_th=1e9)
    ls = lif.initial_state(2)
    ctx = StepContext(0.0, DT, torch.Generator().manual_seed(8))
    a = lif(ls, Drive(), DT, ctx)["V"]
    ctx = StepContext(0.0, DT, torch.Generator().manual_seed(8))
    assert torch.equal(a, lif(ls, Drive(), DT, ctx)["V"])


def test_lif_conductance_input_with_a_per_neuron_current():
    """A (n,) input current with conductance synapses whose E is 0 (no current of their
    own) broadcasts to (batch, n); it used to fail in an in-place division."""
    import torch

    from bionn.circuits.connect import fixed_prob
    from bionn.spiking import LIF, Exponential, Network, Projection

    g = torch.Generator().manual_seed(0)
    net = Network({"E": LIF(10, V_rest=-65.0, V_reset=-70.0, V_th=-50.0, tau=20.0)},
                  [Projection("E", "E", fixed_prob(10, 10, 0.3, generator=g),
                              Exponential(g_max=1.0), weight=2.0, output="conductance", E=0.0)],
                  inputs={"E": torch.linspace(14.0, 22.0, 10)})
    res = net.run(50.0, batch=2, progress=False, seed=1)
    assert res.state["E"]["V"].shape == (2, 10) and res.spikes["E"].count() > 0
