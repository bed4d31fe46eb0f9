"""Trainable spiking cells, readouts, SpikingRNN/SpikingLayer and the hand-off to the simulator."""

from __future__ import annotations

import pytest
import torch

from bionn.circuits import Connectivity
from bionn.functional.surrogate import Arctan, FastSigmoid
from bionn.recurrent.core import RecurrentModel, detach_state
from bionn.spiking import (
    ALIF,
    LIF,
    Drive,
    LeakyReadout,
    SpikingCell,
    SpikingLayer,
    SpikingRNN,
    count_loss,
    first_spike_loss,
    first_spike_time,
    membrane_loss,
    spike_count,
)

CELLS = {
    "LIF exponential": ("LIF", {"synapse": "exponential", "t_refractory": 2.0}, 40.0),
    "LIF dual_exponential": ("LIF", {"synapse": "dual_exponential", "tau_rise": 2.0}, 40.0),
    "ALIF": ("ALIF", {"synapse": "exponential", "t_refractory": 0.0}, 40.0),
    "COBA": ("LIF", {"synapse": "conductance", "V_rest": -60.0, "V_reset": -60.0, "V_th": -50.0,
                     "t_refractory": 0.0, "tau_syn": 5.0}, 0.5),
    "AdExIF": ("AdExIF", {"synapse": "exponential"}, 60.0),
    "Izhikevich": ("Izhikevich", {"synapse": "exponential"}, 20.0),
}


def _layer(name: str, **extra):
    neuron, opts, gain = CELLS[name]
    torch.manual_seed(0)
    layer = SpikingLayer(5, 6, neuron, dt=0.5, **{**opts, **extra})
    with torch.no_grad():
        layer.linear.weight.mul_(gain)
        layer.linear.bias.fill_(gain / 4)
    return layer


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradients_flow_for_every_cell(name):
    layer = _layer(name)
    x = torch.rand(3, 40, 5)
    spikes = layer(x)
    assert 0 < spikes.sum() < spikes.numel() and set(spikes.unique().tolist()) <= {0.0, 1.0}
    first_spike_loss(spikes, torch.tensor([0, 1, 2]), dt=0.5).backward()
    g = layer.linear.weight.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def _task(n: int, g: torch.Generator):
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 30, 2, generator=g) * 0.5
    x[torch.arange(n), :, y] += 0.5
    return x, y


def test_tiny_task_learns_with_dale():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = SpikingRNN(2, 40, 2, dt=1.0, e_fraction=0.8, t_refractory=0.0, tau=10.0, tau_syn=5.0,
                     input_gain=3.0, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(80):
        x, y = _task(32, g)
        out, _ = net(x)
        loss = membrane_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _task(256, g)
    with torch.no_grad():
        out, _ = net(x)
    acc = (out.amax(1).argmax(1) == y).float().mean().item()
    assert acc >= 0.9, acc
    w = net.weight_rec
    assert bool((w[:, :32] >= 0).all()) and bool((w[:, 32:] <= 0).all())


def test_learnable_parameters_stay_valid():
    torch.manual_seed(0)
    cell_opts = {"learn": ("tau", "V_th", "beta", "tau_a", "tau_syn"), "t_refractory": 0.0}
    net = SpikingRNN(2, 10, 2, cell="ALIF", dt=1.0, tau=2.0, tau_a=5.0, tau_syn=1.5, **cell_opts)
    nr = net.cell.neuron
    assert nr.tau.shape == (10,) and len(list(net.parameters())) >= 8
    opt = torch.optim.SGD(net.parameters(), lr=1e4)
    for _ in range(3):
        out, s = net(torch.rand(4, 10, 2) * 5)
        opt.zero_grad()
        (out.sum() + (nr.tau + nr.tau_a + net.cell.tau_syn).sum() * 1e3).backward()
        opt.step()
    assert bool((nr.tau >= 1.0).all()) and bool((nr.tau_a >= 1.0).all())
    assert bool((net.cell.tau_syn >= 1.0).all()) and bool((nr.beta >= 0).all())


def test_surrogate_changes_gradients_not_spikes():
    grads, spikes = [], []
    for sur in (FastSigmoid(slope=25.0), Arctan(alpha=2.0)):
        layer = _layer("LIF exponential", surrogate=sur)
        s = layer(torch.rand(2, 30, 5, generator=torch.Generator().manual_seed(1)))
        count_loss(s, torch.tensor([0, 1])).backward()
        grads.append(layer.linear.weight.grad.clone())
        spikes.append(s.detach())
    assert torch.equal(spikes[0], spikes[1])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("mode", ["value", "subtract"])
def test_detach_reset_changes_gradients(mode):
    grads = []
    for detach in (True, False):
        layer = _layer("LIF exponential", reset=mode, detach_reset=detach)
        s = layer(torch.rand(2, 30, 5, generator=torch.Generator().manual_seed(1)))
        count_loss(s, torch.tensor([0, 1])).backward()
        grads.append(layer.linear.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_sparse_and_dense_recurrence_give_the_same_spikes():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(30, 30, generator=g) < 0.3).float()
    sign = torch.ones(30)
    sign[24:] = -1
    kw = {"dt": 1.0, "t_refractory": 0.0, "input_gain": 3.0, "recurrent_gain": 3.0}
    dense = SpikingRNN(2, 30, 2, connectivity=Connectivity(mask, sign, layout="dense"), **kw)
    sparse = SpikingRNN(2, 30, 2, connectivity=Connectivity(mask, sign, layout="sparse"), **kw)
    assert not dense.sparse and sparse.sparse and sparse.weight_rec.dim() == 1
    with torch.no_grad():
        sparse.weight_in = dense.weight_in
        sparse.weight_out = dense.weight_out
        w = dense.weight_rec
        sparse.weight_rec = w[sparse.structure.row.long(), sparse.structure.col.long()]
    assert torch.allclose(sparse.recurrent_weight(), dense.weight_rec)
    x = torch.rand(3, 40, 2, generator=g)
    out_d, s_d = dense(x)
    out_s, s_s = sparse(x)
    assert s_d.sum() > 0 and torch.equal(s_d, s_s) and torch.allclose(out_d, out_s, atol=1e-5)
    for net in (dense, sparse):  # Dale after a step
        opt = torch.optim.SGD(net.parameters(), lr=10.0)
        out, _ = net(x)
        out.pow(2).sum().backward()
        opt.step()
        w = net.recurrent_weight()
        assert bool((w[:, 24:] <= 0).all()) and bool((w[:, :24] >= 0).all())
        assert bool((w[mask == 0] == 0).all())


@pytest.mark.parametrize("cell", ["LIF", "ALIF"])
@pytest.mark.parametrize("synapse", ["exponential", "delta"])
def test_hand_off_to_the_simulator_gives_the_same_spikes(cell, synapse):
    torch.manual_seed(0)
    extra = {"beta": 300.0} if cell == "ALIF" else {}
    net = SpikingRNN(3, 25, 2, cell=cell, dt=0.5, e_fraction=0.8, synapse=synapse, t_refractory=2.0,
                     input_gain=3.0, recurrent_gain=2.0, learn=("tau",), **extra).double()
    x = torch.rand(2, 80, 3, dtype=torch.float64)
    with torch.no_grad():
        _, spikes = net(x)
    sim = net.to_network(x)
    res = sim.run(80 * 0.5, dt=0.5, batch=2, progress=False, dtype=torch.float64)
    assert spikes.sum() > 20
    assert torch.equal(res.spikes["hidden"].dense(torch.float64), spikes)


def test_alif_simulator_threshold_adapts():
    def count(m):
        s, n = m.initial_state(dtype=torch.float64), 0
        for _ in range(3000):
            s = m(s, Drive(current=torch.full((1, 1), 40.0, dtype=torch.float64)), 0.1)
            n += int(s["spike"].sum())
        return n, s

    n_lif, _ = count(LIF(1, t_refractory=0.0).double())
    n_alif, s = count(ALIF(1, t_refractory=0.0, beta=2000.0).double())
    assert n_alif < n_lif and float(s["b"]) > 0


def test_convert_fa_trains_the_network():
    from bionn.learning import convert

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = SpikingRNN(2, 30, 2, dt=1.0, e_fraction=0.8, t_refractory=0.0, input_gain=3.0, generator=g)
    assert isinstance(net, RecurrentModel)
    assert set(net.connection_parameters()) == {"input", "recurrent", "readout"}
    fa = convert(net, "fa").model
    assert set(fa.credit_assignment) == {"input", "recurrent", "readout"}
    opt = torch.optim.Adam(fa.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        x, y = _task(32, g)
        out, _ = fa(x)
        loss = membrane_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.05
    w = fa.weight_rec
    assert bool((w[:, 24:] <= 0).all())


def test_truncated_bptt_continues_the_same_trial():
    torch.manual_seed(0)
    net = SpikingRNN(2, 20, 2, dt=1.0, input_gain=3.0, readout="linear")
    x = torch.rand(2, 40, 2)
    out, s = net(x)
    o1, s1, st = net(x[:, :20], return_state=True)
    o2, s2 = net(x[:, 20:], detach_state(st))
    assert torch.equal(torch.cat([s1, s2], 1), s) and torch.allclose(torch.cat([o1, o2], 1), out)
    o2.sum().backward()
    assert net.weight_in.grad is not None


def test_readouts_and_losses():
    s = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    assert first_spike_time(s, 2.0).tolist() == [[4.0, 8.0]]
    assert spike_count(s).tolist() == [[2.0, 0.0]]
    ro = LeakyReadout(2, 3, dt=1.0, tau=10.0, learn_tau=True)
    v = ro(torch.ones(2, 50, 2))
    with torch.no_grad():
        steady = ro.linear(torch.ones(2))
    assert torch.allclose(v[0, -1], steady * (1 - torch.exp(torch.tensor(-5.0))), atol=1e-5)
    for reduce in ("max", "last", "mean"):
        assert torch.isfinite(membrane_loss(v, torch.tensor([0, 2]), reduce))
    with pytest.raises(ValueError, match="reduce"):
        membrane_loss(v, torch.tensor([0, 2]), "min")
    assert first_spike_loss(s, torch.tensor([0]), 2.0) < first_spike_loss(s, torch.tensor([1]), 2.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown neuron"):
        SpikingCell("HH", 3)
    with pytest.raises(ValueError, match="synapse"):
        SpikingCell("LIF", 3, synapse="alpha")
    with pytest.raises(ValueError, match="learn"):
        SpikingCell("LIF", 3, learn=("nope",))
    with pytest.raises(ValueError, match="tau_syn"):
        SpikingCell("LIF", 3, dt=1.0, tau_syn=0.0)
