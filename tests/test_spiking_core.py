"""Connection rules, event-driven projections and the network loop."""

import math

import numpy as np
import pytest
import torch

from bionn.circuits import Connectivity
from bionn.circuits.connect import (
    all_to_all,
    distance_prob,
    fixed_in_degree,
    fixed_out_degree,
    fixed_prob,
    from_edges,
    from_matrix,
    grid_positions,
    one_to_one,
)
from bionn.spiking import LIF, Drive, Exponential, Network, Projection, coba


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- connection rules ----------------------------------------------------------
def test_all_to_all_and_one_to_one():
    c = all_to_all(3, 4)
    assert c.is_sparse and c.nnz == 12 and torch.equal(c.dense(), torch.ones(3, 4))
    c = all_to_all(5, 5, autapses=False)
    assert c.nnz == 20 and c.dense().diagonal().sum() == 0
    assert torch.equal(one_to_one(4).dense(), torch.eye(4))


def test_fixed_prob_density_rows_and_no_autapses():
    c = fixed_prob(2000, 1000, 0.05, generator=gen(1))
    n = c.nnz
    expected = 2000 * 1000 * 0.05
    assert abs(n - expected) < 5 * math.sqrt(expected)  # binomial: 5 standard deviations
    indeg = c.dense().sum(1)
    assert abs(float(indeg.var()) - 1000 * 0.05 * 0.95) < 10  # Bernoulli per synapse, not fixed
    post, pre = c.edges()
    assert post.numel() == n and int(pre.max()) < 1000
    c = fixed_prob(300, 300, 0.3, autapses=False, generator=gen(2))
    assert c.dense().diagonal().sum() == 0
    # reproducible under a seed, different under another
    assert torch.equal(fixed_prob(50, 50, 0.2, generator=gen(3)).dense(),
                       fixed_prob(50, 50, 0.2, generator=gen(3)).dense())
    assert not torch.equal(fixed_prob(50, 50, 0.2, generator=gen(3)).dense(),
                           fixed_prob(50, 50, 0.2, generator=gen(4)).dense())
    with pytest.raises(ValueError, match="p must be in"):
        fixed_prob(3, 3, 1.5)


def test_fixed_degrees_are_exact():
    c = fixed_in_degree(40, 30, 7, autapses=True, generator=gen())
    assert torch.equal(c.dense().sum(1), torch.full((40,), 7.0))
    c = fixed_out_degree(30, 40, 5, generator=gen())
    assert torch.equal(c.dense().sum(0), torch.full((40,), 5.0))
    c = fixed_in_degree(20, 20, 19, autapses=False, generator=gen())
    assert c.dense().diagonal().sum() == 0 and c.nnz == 20 * 19
    with pytest.raises(ValueError, match="in-degree k must be in"):
        fixed_in_degree(5, 5, 6)


def test_distance_prob_falls_with_distance():
    c = distance_prob((20, 20), (20, 20), p_max=0.9, sigma=0.1, periodic=True, generator=gen())
    pos = grid_positions((20, 20))
    post, pre = c.edges()
    d = (pos[post] - pos[pre]).abs()
    d = torch.minimum(d, 1 - d).pow(2).sum(-1).sqrt()
    assert float(d.mean()) < 0.2  # close neighbours dominate
    near = distance_prob((10, 10), (10, 10), p_max=1.0, sigma=1.0, radius=0.15, generator=gen())
    post, pre = near.edges()
    pos = grid_positions((10, 10))
    assert float((pos[post] - pos[pre]).pow(2).sum(-1).sqrt().max()) <= 0.15 + 1e-9


def test_from_matrix_round_trips_dense_numpy_and_scipy():
    w = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    for m in (w, w.numpy(), w.to_sparse()):
        conn, values = from_matrix(m)
        dense = torch.zeros(2, 3)
        post, pre = conn.edges()
        dense[post, pre] = values
        assert torch.equal(dense, w)
    scipy = pytest.importorskip("scipy.sparse", reason="scipy is optional")
    conn, values = from_matrix(scipy.csr_matrix(w.numpy()))
    assert conn.nnz == 3 and sorted(values.tolist()) == [-3.0, 1.5, 2.0]


def test_sparse_connectivity_checks_values_and_sign():
    with pytest.raises(ValueError, match="only 0 and 1"):
        Connectivity(torch.tensor([[0.0, 2.0]]).to_sparse())
    c = from_edges([0, 1], [1, 0], 2, 2, sign=torch.tensor([1.0, -1.0]))
    assert c.density == 0.5 and c.sign.tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="out of range"):
        from_edges([0, 2], [0, 0], 2, 2)


# -- projections -----------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 3])
def test_deliver_equals_dense_matmul(batch):
    g = gen(5)
    conn = fixed_prob(30, 20, 0.3, generator=g)
    weights = torch.randn(conn.nnz, generator=g)
    p = Projection("A", "B", conn, Exponential(), weight=weights)
    dense = p.dense_weight()
    spikes = torch.rand(batch, 20, generator=g) < 0.3
    graded = torch.randn(batch, 20, generator=g)
    torch.testing.assert_close(p.deliver(spikes, p.weight), spikes.float() @ dense.T)
    torch.testing.assert_close(p.deliver(graded, p.weight, event_driven=False), graded @ dense.T)
    torch.testing.assert_close(p.deliver(graded, p.weight), graded @ dense.T)
    w_batch = p.weight.expand(batch, -1, -1) * torch.arange(1, batch + 1.0)[:, None, None]
    expected = torch.stack([(spikes[b].float() @ dense.T) * (b + 1) for b in range(batch)])
    torch.testing.assert_close(p.deliver(spikes, w_batch), expected)


def test_projection_weight_forms_and_errors():
    conn = all_to_all(2, 3)
    m = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(Projection("A", "B", conn, Exponential(), weight=m).dense_weight(), m)
    with pytest.raises(ValueError, match="weight must be"):
        Projection("A", "B", conn, Exponential(), weight=torch.ones(5))
    with pytest.raises(ValueError, match="reversal potential"):
        Projection("A", "B", conn, Exponential(), output="conductance")
    with pytest.raises(ValueError, match="delay"):
        Projection("A", "B", conn, Exponential(), delay=-1.0)


# -- network loop ----------------------------------------------------------------
def test_network_validates_structure():
    lif = LIF(4)
    with pytest.raises(ValueError, match="post group 'X'"):
        Network({"A": lif}, [Projection("A", "X", all_to_all(4, 4), Exponential())])
    with pytest.raises(ValueError, match="covers"):
        Network({"A": lif}, [Projection("A", "A", all_to_all(3, 4), Exponential())])
    with pytest.raises(ValueError, match="inputs name unknown"):
        Network({"A": lif}, inputs={"B": 1.0})
    net = Network({"A": lif}, inputs={"A": 25.0})
    with pytest.raises(ValueError, match="dt must be"):
        net.run(10.0, dt=0.0, progress=False)
    with pytest.raises(ValueError, match="unknown variable"):
        net.run(10.0, record={"A": ["W"]}, progress=False)


def test_monitors_every_k_steps_and_chosen_neurons():
    net = Network({"A": LIF(5)}, inputs={"A": torch.tensor([25.0, 25.0, 0.0, 30.0, 0.0])})
    res = net.run(20.0, dt=0.1, record={"A": ["V"]}, record_every=10, record_neurons={"A": [0, 3]},
                  progress=False)
    assert res.traces["A.V"].shape == (1, 20, 2)
    torch.testing.assert_close(res.trace_times, torch.arange(1, 21, dtype=torch.float64))
    full = net.run(20.0, dt=0.1, record={"A": ["V"]}, progress=False)
    torch.testing.assert_close(res.traces["A.V"][0], full.traces["A.V"][0, 9::10][:, [0, 3]])
    assert res.spikes["A"].dense().shape == (1, 200, 5)
    assert set(res.spikes["A"].neuron.tolist()) == {0, 1, 3}


def test_batch_trials_are_independent_and_float64_works():
    net = coba(200, generator=gen(0))
    state = net.initial_state(batch=3, generator=gen(1))
    single = {k: {kk: vv[1:2].clone() for kk, vv in v.items()} for k, v in state.items()}
    both = net.run(30.0, state=state, progress=False)
    one = net.run(30.0, state=single, progress=False)
    mask = both.spikes["P"].trial == 1
    assert torch.equal(both.spikes["P"].step[mask], one.spikes["P"].step)
    assert torch.equal(both.spikes["P"].neuron[mask], one.spikes["P"].neuron)
    net64 = coba(200, generator=gen(0)).double()
    res = net64.run(30.0, batch=2, record={"P": ["V"]}, progress=False)
    assert res.traces["P.V"].dtype == torch.float64 and torch.isfinite(res.traces["P.V"]).all()


def test_conductance_synapse_is_exact_for_lif():
    """With a constant conductance the exact update matches the closed form."""
    lif = LIF(1, V_rest=-60.0, V_reset=-70.0, V_th=100.0, tau=20.0, t_refractory=0.0)
    state = lif.initial_state(1)
    g, e = 0.5, -80.0
    for _ in range(100):
        state = lif(state, Drive(current=torch.tensor([[g * e]]), conductance=torch.tensor([[g]])), 0.1)
    v_inf = (-60.0 + g * e) / (1 + g)
    expected = v_inf + (-60.0 - v_inf) * np.exp(-10.0 * (1 + g) / 20.0)
    assert float(state["V"]) == pytest.approx(expected, abs=1e-4)


def test_delivery_without_spikes_adds_nothing():
    p = Projection("A", "B", fixed_prob(100, 100, 0.5, generator=gen()), Exponential())
    out = p.deliver(torch.zeros(1, 100, dtype=torch.bool), p.weight)
    assert float(out.abs().sum()) == 0.0
