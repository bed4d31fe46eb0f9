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


@pytest.mark.parametrize("shape, dim", [((50, 40), 1), ((7, 9), -1), ((6, 3, 5, 5), 1),
                                        ((100,), 0), ((4, 6, 3), 2)])
def test_dale_compiled_pass_is_bitwise_pytorchs(shape, dim):
    """Float32 CPU Dale weights take one compiled pass each way; forward and gradient are
    bit for bit ``|raw| * sign`` under autograd (zeros of both signs, NaN, inf included),
    and a double backward still works."""
    from bionn.constraints import _dale_library

    if _dale_library() is None:
        pytest.skip("no C++ compiler: the compiled Dale pass cannot be built")
    torch.manual_seed(0)
    raw = torch.randn(*shape)
    raw.view(-1)[:4] = torch.tensor([0.0, -0.0, float("nan"), float("inf")])
    sign = torch.where(torch.rand(shape[dim]) < 0.5, 1.0, -1.0)
    dale = Dale(sign, dim=dim)
    a, b = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    wa, wb = dale(a), b.abs() * dale._view(sign, b)
    assert type(wa.grad_fn).__name__ == "_AbsTimesSignBackward"
    g = torch.randn(*shape)
    g.view(-1)[4] = -0.0
    wa.backward(g)
    wb.backward(g)
    assert torch.equal(wa.view(torch.int32), wb.view(torch.int32))
    assert torch.equal(a.grad.view(torch.int32), b.grad.view(torch.int32))
    c = torch.randn(*shape, requires_grad=True)
    (gc,) = torch.autograd.grad(dale(c).square().sum(), c, create_graph=True)
    torch.testing.assert_close(gc, 2 * c.detach())  # d/dc (|c| s)^2 = 2c
    gc.sum().backward()
    torch.testing.assert_close(c.grad, torch.full_like(c, 2.0))


def test_dale_other_cases_keep_pytorchs_operations():
    sign = torch.tensor([1.0, -1.0, 0.0])
    for dale, raw in ((Dale(sign, dim=1, allow_unsigned=True), torch.randn(2, 3)),
                      (Dale(sign[:2], magnitude="softplus", dim=1), torch.randn(2, 2)),
                      (Dale(sign[:2].double(), dim=1), torch.randn(2, 2, dtype=torch.float64))):
        w = dale(raw.requires_grad_())
        assert type(w.grad_fn).__name__ != "_AbsTimesSignBackward"


def test_dale_weights_under_torch_func_transforms():
    """vmap, grad and jacrev (which the compiled pass cannot join) fall back to PyTorch's
    operations and give the same values."""
    from torch import nn
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    parametrize.register_parametrization(layer, "weight",
                                         Dale(torch.tensor([1.0, -1.0, 1.0, -1.0]), dim=1))
    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(torch.func.vmap(layer)(x), layer(x))
    params = dict(layer.named_parameters())
    grads = torch.func.grad(
        lambda p, x: torch.func.functional_call(layer, p, (x,)).sum())(params, x[0])
    layer(x[0]).sum().backward()
    for name, g in grads.items():
        torch.testing.assert_close(g, dict(layer.named_parameters())[name].grad)
    jac = torch.func.jacrev(layer)(x[0, 0])
    torch.testing.assert_close(jac, layer.weight.detach())


@pytest.mark.parametrize("shape, dim", [((5, 7), 1), ((4, 3, 2, 2), 1), ((6,), 0)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_dale_projection_gives_the_same_weight_and_gradient(shape, dim, contiguous):
    torch.manual_seed(0)
    n = shape[dim]
    d = Dale(torch.where(torch.rand(n) < 0.5, 1.0, -1.0), dim=dim)
    base = torch.randn(*shape)
    if not contiguous and len(shape) > 1:
        base = base.transpose(0, -1).contiguous().transpose(0, -1)
    raw = torch.nn.Parameter(base.clone())
    w_before = d(raw).detach()
    assert d.project_(raw)
    w = d(raw)
    assert w is raw and torch.equal(w, w_before)  # no pass, no graph node, the same W
    with torch.no_grad():
        assert not d(raw).requires_grad  # as the computed weight under no_grad
    ref = torch.nn.Parameter(raw.detach().clone())  # the same values, the full path
    w_ref = d(ref)
    assert w_ref is not ref and torch.equal(w_ref, w_before)
    g = torch.randn(*shape)
    w.backward(g)
    w_ref.backward(g)
    assert torch.equal(raw.grad, ref.grad)  # (g sign) sgn(raw) = g on a projected raw
    with torch.no_grad():
        raw.mul_(-1.0)  # an in-place change: the forward computes |raw| sign again
    assert d(raw) is not raw and torch.equal(d(raw), w_ref)
    other = torch.nn.Parameter(raw.detach().clone())
    assert torch.equal(d(other), w_ref)  # another tensor is never taken for the projected one


def test_dale_projection_refuses_zeros_softplus_and_unsigned_units():
    d = Dale(torch.tensor([1.0, -1.0]))
    raw = torch.nn.Parameter(torch.tensor([[0.0, 0.5]]))
    assert not d.project_(raw)  # sgn(0) = 0: the parametrization's gradient is 0 there
    assert raw.tolist() == [[0.0, -0.5]] and d(raw) is not raw
    raw.grad = None
    d(raw).sum().backward()
    assert raw.grad.tolist() == [[0.0, 1.0]]
    soft = Dale(torch.tensor([1.0, -1.0]), magnitude="softplus")
    assert not soft.project_(torch.nn.Parameter(torch.ones(1, 2)))
    free = Dale(torch.tensor([1.0, 0.0]), allow_unsigned=True)
    assert not free.project_(torch.nn.Parameter(torch.ones(1, 2)))


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_dale_projection_after_each_step_trains_as_the_parametrization(opt_name):
    """Under SGD, and under Adam while no weight reaches zero, projecting before the first
    step and after every step leaves the weights' trajectory that of the parametrization
    (Adam's state is then built in the projected weight's own signs)."""
    from torch.nn.utils import parametrize

    torch.manual_seed(0)
    sign = torch.where(torch.rand(6) < 0.5, 1.0, -1.0)
    layers = []
    for _ in range(2):
        m = torch.nn.Linear(6, 4)
        with torch.no_grad():
            m.weight.copy_(torch.rand(4, 6) + 0.5)  # far from zero: no weight reaches it
        parametrize.register_parametrization(m, "weight", Dale(sign, dim=1))
        layers.append(m)
    layers[1].load_state_dict(layers[0].state_dict())
    # projected before the optimizer holds any state, as BioConverter.convert does
    layers[1].parametrizations.weight[0].project_(layers[1].parametrizations.weight.original)
    x = torch.randn(8, 6)
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.01),
            "adam": lambda p: torch.optim.Adam(p, lr=1e-3)}[opt_name]
    opts = [make(m.parameters()) for m in layers]
    for _ in range(20):
        for k, (m, opt) in enumerate(zip(layers, opts, strict=True)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
            if k == 1:
                m.parametrizations.weight[0].project_(m.parametrizations.weight.original)
    assert layers[1].weight is layers[1].parametrizations.weight.original
    torch.testing.assert_close(layers[1].weight, layers[0].weight, rtol=1e-6, atol=1e-7)
