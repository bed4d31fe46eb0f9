"""Constraints hold by construction after many optimizer steps."""

import pytest
import torch

from bionn.circuits import MultiAreaEI
from bionn.constraints import Dale, GradScale, Mask, constrain, ei_sign
from bionn.rate import CTRNN


def _train(net, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 10, net.n_input, generator=g)
        target = torch.randn(8, 10, net.n_output, generator=g) * 3
        out, rates = net(x)
        loss = (out - target).pow(2).mean() + rates.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_dale_sparsity_and_frozen_synapses_hold_under_training(opt_name):
    torch.manual_seed(0)
    n = 40
    mask = (torch.rand(n, n) < 0.3).float()
    plastic = torch.ones(n, n)
    plastic[:10] = 0.0  # synapses onto the first 10 neurons are frozen
    net = CTRNN(3, n, 2, e_fraction=0.8, rec_mask=mask, grad_scale={"recurrent": plastic},
                spectral_radius=1.0, generator=torch.Generator().manual_seed(1))
    frozen_before = net.weight_rec[:10].detach().clone()
    w0 = net.weight_rec.detach().clone()
    opt = (torch.optim.Adam(net.parameters(), lr=0.05) if opt_name == "adam"
           else torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9))
    _train(net, opt, 300)
    w = net.weight_rec.detach()
    assert (w[:, :32] >= 0).all(), "an excitatory weight became negative"
    assert (w[:, 32:] <= 0).all(), "an inhibitory weight became positive"
    assert (w[mask == 0] == 0).all(), "a masked synapse became non-zero"
    torch.testing.assert_close(w[:10], frozen_before, rtol=0, atol=0)
    assert (w[10:] - w0[10:]).abs().max() > 1e-2, "plastic synapses did not learn"
    if opt_name == "adam":
        # Adam did push raw E weights below zero: the constraint, not luck, kept W >= 0.
        raw = net.parametrizations.weight_rec.original.detach()
        assert ((raw[:, :32] < 0) & (mask[:, :32] == 1)).any()


def test_scaled_plasticity_scales_sgd_step():
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3, bias=False)
    scale = torch.full((3, 4), 0.25)
    scale[0] = 1.0
    constrain(layer, "weight", grad_scale=scale)
    w0 = layer.weight.detach().clone()
    ref = torch.nn.Linear(4, 3, bias=False)
    ref.weight.data.copy_(w0)
    x = torch.randn(5, 4)
    for m in (layer, ref):
        m(x).pow(2).sum().backward()
        with torch.no_grad():
            for p in m.parameters():
                p -= 0.1 * p.grad
    torch.testing.assert_close(layer.weight - w0, (ref.weight - w0) * scale)


def test_constraint_validation_messages():
    with pytest.raises(ValueError, match="sign"):
        Dale(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="mask"):
        Mask(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GradScale(torch.tensor([2.0]))
    layer = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="expected 4"):
        constrain(layer, "weight", sign=torch.ones(3))
    with pytest.raises(ValueError, match=r"expected \(3, 4\)"):
        constrain(layer, "weight", mask=torch.ones(4, 3))
    with pytest.raises(ValueError, match="e_fraction"):
        ei_sign(10, 0.0)


def test_masks_and_signs_are_buffers_not_parameters():
    net = CTRNN(2, 10, 1, e_fraction=0.8, rec_mask=(torch.rand(10, 10) < 0.5).float(),
                grad_scale={"recurrent": torch.ones(10, 10)})
    names = [n for n, _ in net.named_parameters()]
    assert not any("mask" in n or "sign" in n or "scale" in n for n in names)
    buffers = [n for n, _ in net.named_buffers()]
    assert any(n.endswith("mask") for n in buffers) and any(n.endswith("sign") for n in buffers)


def test_multi_area_ei_circuit_constraints_hold():
    torch.manual_seed(0)
    circuit = MultiAreaEI([30, 30], [[0.4, 0.1], [0.2, 0.4]], n_input=2, n_output=2,
                          cross_pathways=("E->E",)).build(torch.Generator().manual_seed(0))
    net = CTRNN(2, 60, 2, circuit=circuit, readout="excitatory", spectral_radius=1.0)
    _train(net, torch.optim.Adam(net.parameters(), lr=0.05), 100)
    w = net.weight_rec.detach()
    sign = circuit.sign
    assert (w[:, sign > 0] >= 0).all() and (w[:, sign < 0] <= 0).all()
    assert (w[circuit.recurrent.mask == 0] == 0).all()
    # Input reaches only area 0; readout only E neurons of area 1.
    assert (net.weight_in[30:] == 0).all()
    ro = net.weight_out.detach()
    assert (ro[:, :30] == 0).all() and (ro[:, 30:][:, sign[30:] < 0] == 0).all()
