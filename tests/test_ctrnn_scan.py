"""The fused CTRNN scan equals the plain autograd loop, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bionn.functional.ctrnn_scan import SCAN_ACTIVATIONS, ctrnn_scan
from bionn.functional.rate import get_activation
from bionn.rate import CTRNN


def reference_scan(drive, w_t, leak, h0, r0, act_name, post=None):
    """The loop of ``CTRNN.run`` written with plain autograd ops."""
    act = get_activation(act_name)
    B, T, N = drive.shape
    h, r = h0.expand(B, N), r0.expand(B, N)
    rates = []
    for t in range(T):
        h = torch.addmm(torch.addcmul(drive[:, t], leak, h), r, w_t)
        r = act(h)
        if post is not None:
            r = r + post[:, t]
        rates.append(r)
    return torch.stack(rates, 1), h


def make_inputs(B, T, N, dtype, post, seed=0, h0_shape=None):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    drive = rnd(B, T, N)
    w_t = rnd(N, N, scale=0.5 / N**0.5)
    leak = (0.5 + 0.4 * torch.rand(N, generator=g, dtype=dtype)).requires_grad_()
    h0 = rnd(*(h0_shape or (B, N)), scale=0.5)
    r0 = rnd(*(h0_shape or (B, N)), scale=0.5)
    noise = torch.randn(B, T, N, generator=g, dtype=dtype) * 0.1 if post else None
    return drive, w_t, leak, h0, r0, noise


def loss_of(rates, h_last, seed=1):
    g = torch.Generator().manual_seed(seed)
    c1 = torch.randn(rates.shape, generator=g, dtype=rates.dtype)
    c2 = torch.randn(h_last.shape, generator=g, dtype=rates.dtype)
    return (rates * c1).sum() + (h_last * c2).sum()


# With a frozen leak (fixed tau) and no post noise, the scan keeps no h_t and takes
# the derivative of relu, tanh and sigmoid from r_t: both code paths are covered.
@pytest.mark.parametrize("learn_leak", [True, False], ids=["learn_tau", "fixed_tau"])
@pytest.mark.parametrize("post", [False, True], ids=["no_noise", "post_noise"])
@pytest.mark.parametrize("act", SCAN_ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 7, 6), (1, 5, 3), (3, 1, 4)], ids=str)
def test_matches_autograd_loop(act, post, shape, learn_leak):
    B, T, N = shape
    inputs = make_inputs(B, T, N, torch.float32, post)
    drive, w_t, leak, h0, r0, noise = inputs
    if not learn_leak:
        leak = leak.detach()
    params = (drive, w_t, leak, h0, r0) if learn_leak else (drive, w_t, h0, r0)
    names = ("drive", "w_t", "leak", "h0", "r0") if learn_leak else ("drive", "w_t", "h0", "r0")

    rates, h_last = ctrnn_scan(drive, w_t, leak, h0, r0, act, noise)
    ref_rates, ref_h = reference_scan(drive, w_t, leak, h0, r0, act, noise)
    torch.testing.assert_close(rates, ref_rates, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_last, ref_h, rtol=1e-5, atol=1e-6)

    grads = torch.autograd.grad(loss_of(rates, h_last), params)
    ref_grads = torch.autograd.grad(loss_of(ref_rates, ref_h), params)
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("learn_leak", [True, False], ids=["learn_tau", "fixed_tau"])
@pytest.mark.parametrize("post", [False, True], ids=["no_noise", "post_noise"])
@pytest.mark.parametrize("act", SCAN_ACTIVATIONS)
def test_gradcheck_float64(act, post, learn_leak):
    drive, w_t, leak, h0, r0, noise = make_inputs(2, 3, 3, torch.float64, post, seed=3)
    leak.requires_grad_(learn_leak)

    def f(drive, w_t, leak, h0, r0):
        return ctrnn_scan(drive, w_t, leak, h0, r0, act, noise)

    assert torch.autograd.gradcheck(f, (drive, w_t, leak, h0, r0))


@pytest.mark.parametrize("post", [False, True], ids=["no_noise", "post_noise"])
@pytest.mark.parametrize("act", SCAN_ACTIVATIONS)
def test_float64_gradients_equal_loop(act, post):
    drive, w_t, leak, h0, r0, noise = make_inputs(5, 9, 8, torch.float64, post, seed=4)
    params = (drive, w_t, leak, h0, r0)
    grads = torch.autograd.grad(loss_of(*ctrnn_scan(*params, act, noise)), params)
    ref = torch.autograd.grad(loss_of(*reference_scan(*params, act, noise)), params)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_only_rates_or_only_final_state_used():
    drive, w_t, leak, h0, r0, _ = make_inputs(3, 6, 5, torch.float64, False)
    params = (drive, w_t, leak, h0, r0)
    for pick in (0, 1):
        out = ctrnn_scan(*params, "tanh")[pick].square().sum()
        ref = reference_scan(*params, "tanh")[pick].square().sum()
        grads, ref_grads = torch.autograd.grad(out, params), torch.autograd.grad(ref, params)
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b)


def test_broadcast_initial_state_and_frozen_inputs():
    drive, w_t, leak, h0, r0, _ = make_inputs(3, 4, 5, torch.float64, False, h0_shape=(5,))
    leak = leak.detach()  # fixed time constants: no gradient asked for leak
    params = (drive, w_t, h0, r0)
    out = ctrnn_scan(drive, w_t, leak, h0, r0, "softplus")
    ref = reference_scan(drive, w_t, leak, h0, r0, "softplus")
    grads = torch.autograd.grad(loss_of(*out), params)
    ref_grads = torch.autograd.grad(loss_of(*ref), params)
    for a, b in zip(grads, ref_grads, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


def test_no_grad_forward_and_errors():
    drive, w_t, leak, h0, r0, _ = make_inputs(2, 3, 4, torch.float32, False)
    with torch.no_grad():
        rates, h = ctrnn_scan(drive, w_t, leak, h0, r0, "relu")
        ref_rates, ref_h = reference_scan(drive, w_t, leak, h0, r0, "relu")
    assert not rates.requires_grad
    torch.testing.assert_close(rates, ref_rates)
    with pytest.raises(ValueError, match="activation_name"):
        ctrnn_scan(drive, w_t, leak, h0, r0, "gelu")
    with pytest.raises(ValueError, match="time step"):
        ctrnn_scan(drive[:, :0], w_t, leak, h0, r0, "relu")
    with pytest.raises(ValueError, match="w_scaled_t"):
        ctrnn_scan(drive, w_t[:2], leak, h0, r0, "relu")


@pytest.mark.parametrize("learn_tau", [True, False], ids=["learn_tau", "fixed_tau"])
@pytest.mark.parametrize("act", SCAN_ACTIVATIONS)
def test_ctrnn_module_gradients_match_plain_loop(act, learn_tau):
    """``CTRNN.run`` (whatever loop it uses) has the gradients of the plain autograd loop."""
    torch.manual_seed(0)
    net = CTRNN(3, 12, 2, dt=20, tau=torch.linspace(40, 200, 12), learn_tau=learn_tau,
                e_fraction=0.75, activation=act, learn_initial_state=True).double()
    with torch.no_grad():
        net.h0.normal_(0, 0.3)
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    target = torch.randn(4, 9, 2, dtype=torch.float64)
    params = [p for p in net.parameters() if p.requires_grad]

    out, _ = net(x)
    grads = torch.autograd.grad(F.mse_loss(out, target), params)

    alpha = net.alpha
    drive = F.linear(x, net.weight_in, net.bias_rec) * alpha
    state = net.initial_state(x.shape[0])
    rates, _ = reference_scan(drive, (alpha[:, None] * net.weight_rec).T, 1 - alpha,
                              state.h, state.r, act)
    ref_out = F.linear(rates, net.weight_out, net.bias_out)
    torch.testing.assert_close(out, ref_out)
    ref_grads = torch.autograd.grad(F.mse_loss(ref_out, target), params)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("use_rates", [False, True], ids=["outputs_only", "outputs_and_rates"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_readout_gradients_equal_loop(use_rates, bias):
    drive, w_t, leak, h0, r0, noise = make_inputs(4, 7, 6, torch.float64, True, seed=5)
    g = torch.Generator().manual_seed(6)
    w_out = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b_out = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    params = (drive, w_t, leak, h0, r0, w_out) + ((b_out,) if bias else ())

    def loss(rates, h, out):
        value = out.sin().sum() + h.square().sum()
        return value + (rates.cos().sum() if use_rates else 0.0)

    rates, h, out = ctrnn_scan(drive, w_t, leak, h0, r0, "tanh", noise, (w_out, b_out))
    ref_rates, ref_h = reference_scan(drive, w_t, leak, h0, r0, "tanh", noise)
    ref_out = torch.nn.functional.linear(ref_rates, w_out, b_out)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(loss(rates, h, out), params)
    ref = torch.autograd.grad(loss(ref_rates, ref_h, ref_out), params)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_linear_few_inputs_matches_linear():
    from bionn.functional.ctrnn_scan import linear_few_inputs

    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 6, 3, generator=g, dtype=torch.float64).transpose(0, 1)  # strided input
    w = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    y, ref = linear_few_inputs(x, w, b), torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(y, ref)
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, (w, b), gy)
    want = torch.autograd.grad(ref, (w, b), gy)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c)
