import math

import pytest
import torch

from bionn.functional import RateState, ctrnn_step, get_activation, scan
from bionn.rate import CTRNN, block_tau

ACTS = ["relu", "tanh", "sigmoid", "softplus", "retanh"]


@pytest.mark.parametrize("activation", ACTS)
def test_run_matches_reference_euler_loop(activation):
    torch.manual_seed(0)
    net = CTRNN(3, 16, 2, dt=10, tau=block_tau([8, 8], [20.0, 100.0]), activation=activation,
                learn_initial_state=True)
    with torch.no_grad():
        net.h0.normal_()
        net.bias_rec.normal_()
    x = torch.randn(4, 12, 3)
    out, rates = net(x)
    f = get_activation(activation)
    alpha = 10 / net.tau
    h = net.h0.expand(4, -1)
    r = f(h)
    for t in range(12):
        h = (1 - alpha) * h + alpha * (r @ net.weight_rec.T + x[:, t] @ net.weight_in.T + net.bias_rec)
        r = f(h)
        torch.testing.assert_close(rates[:, t], r, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[:, t], r @ net.weight_out.T + net.bias_out, atol=1e-5, rtol=1e-5)


def test_step_api_equals_run():
    torch.manual_seed(1)
    net = CTRNN(2, 10, 1, e_fraction=0.8)
    x = torch.randn(3, 7, 2)
    out, rates, final = net.run(x)
    state = net.initial_state(3)
    for t in range(7):
        o, r, state = net.step(state, x[:, t])
        torch.testing.assert_close(o, out[:, t], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(state.h, final.h, atol=1e-6, rtol=1e-5)
    # The state continues a sequence: two halves equal the whole.
    o1, _, s1 = net.run(x[:, :3])
    o2, _, _ = net.run(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([o1, o2], 1), out, atol=1e-6, rtol=1e-5)


def test_functional_step_and_scan():
    s = RateState(torch.zeros(2, 3), torch.zeros(2, 3))
    w = torch.eye(3) * 0.5
    drive = torch.ones(2, 5, 3)
    out, final = scan(lambda st, d: ctrnn_step(st, d, w, 0.5, torch.relu), s, (drive,))
    assert out.shape == (2, 5, 3)
    # Fixed point h* = W h* + 1  ->  h* = 2 for W = 0.5 I; the iteration approaches it.
    assert 1.5 < final.h[0, 0].item() < 2.0


@pytest.mark.parametrize("dt", [2.0, 10.0])
def test_preact_noise_variance_independent_of_dt(dt):
    """Linear network, no input: stationary var of h is sigma^2 whatever dt (OU process)."""
    torch.manual_seed(0)
    sigma, tau = 0.3, 50.0
    net = CTRNN(1, 200, 1, dt=dt, tau=tau, activation="relu", preact_noise=sigma, weight_init="zero")
    n_steps = int(10 * tau / dt)
    _, _, state = net.run(torch.zeros(64, n_steps, 1))
    var = state.h.var().item()
    alpha = dt / tau
    expected = sigma**2 * 2 * alpha / (1 - (1 - alpha) ** 2)  # exact for the discrete AR(1)
    assert abs(var - expected) / expected < 0.05
    assert abs(var - sigma**2) / sigma**2 < 0.15


def test_postact_noise_added_to_rates():
    torch.manual_seed(0)
    net = CTRNN(1, 50, 1, postact_noise=0.5, weight_init="zero")
    _, rates = net(torch.zeros(8, 20, 1))
    assert abs(rates.std().item() - 0.5) < 0.05


def test_spectral_radius_and_dale_at_init():
    from bionn.constraints import spectral_radius

    net = CTRNN(2, 120, 2, e_fraction=0.8, spectral_radius=1.3, weight_init="gamma",
                generator=torch.Generator().manual_seed(0))
    w = net.weight_rec.detach()
    assert math.isclose(spectral_radius(w), 1.3, rel_tol=1e-4)
    assert (w[:, :96] >= 0).all() and (w[:, 96:] <= 0).all()
    # E and I input balanced on average.
    assert abs(w.sum().item()) / w.abs().sum().item() < 1e-5


def test_readout_from_excitatory_only():
    net = CTRNN(2, 20, 3, e_fraction=0.75, readout="excitatory")
    assert (net.weight_out[:, 15:] == 0).all()
    assert (net.weight_out[:, :15] != 0).any()
    with pytest.raises(ValueError, match="readout='excitatory'"):
        CTRNN(2, 20, 3, readout="excitatory")


def test_learnable_tau_stays_above_dt_and_learns():
    torch.manual_seed(0)
    net = CTRNN(1, 8, 1, dt=10, tau=torch.linspace(20, 200, 8), learn_tau=True)
    torch.testing.assert_close(net.tau, torch.linspace(20, 200, 8), atol=1e-3, rtol=1e-4)
    opt = torch.optim.Adam([net.time_constants.parametrizations.tau.original], lr=1.0)
    before = net.tau.detach().clone()
    for _ in range(20):
        out, _ = net(torch.randn(4, 10, 1))
        loss = (out - 5).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(net.tau).all() and (net.tau > 10).all()
    assert (net.tau - before).abs().max() > 1.0


def test_learned_initial_state_gets_gradient():
    net = CTRNN(1, 5, 1, learn_initial_state=True)
    out, _ = net(torch.randn(2, 3, 1))
    out.sum().backward()
    assert net.h0.grad is not None and net.h0.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dt=0), "dt"),
        (dict(tau=-5.0), "tau"),
        (dict(dt=20, tau=10.0), "tau must be >= dt"),
        (dict(e_fraction=1.2), "e_fraction"),
        (dict(activation="gelu"), "activation"),
        (dict(rec_mask=torch.ones(5, 4)), "recurrent mask has shape"),
        (dict(weight_init="bogus"), "weight_init"),
        (dict(learn_initial_state="keep"), "learn_initial_state"),
        (dict(tau_groups="area"), "tau_groups"),
        (dict(preact_noise=-1.0), "preact_noise"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CTRNN(2, 10, 1, **kwargs)


def test_bad_input_shape():
    net = CTRNN(2, 10, 1)
    with pytest.raises(ValueError, match=r"\(batch, time, n_input=2\)"):
        net(torch.randn(5, 2))


def test_float64_and_state_dict_roundtrip():
    net = CTRNN(2, 10, 1, e_fraction=0.8).double()
    out, _ = net(torch.randn(2, 4, 2, dtype=torch.float64))
    assert out.dtype == torch.float64
    net2 = CTRNN(2, 10, 1, e_fraction=0.8).double()
    net2.load_state_dict(net.state_dict())
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(net(x)[0], net2(x)[0])


@pytest.mark.parametrize("activation", ACTS)
def test_fused_and_autograd_loops_agree_with_noise_and_learned_tau(activation):
    kw = dict(dt=10, tau=block_tau([6, 6], [30.0, 80.0]), learn_tau=True, activation=activation,
              e_fraction=0.75, preact_noise=0.1, postact_noise=0.05, learn_initial_state=True)
    a = CTRNN(2, 12, 2, fused=True, generator=torch.Generator().manual_seed(0), **kw)
    b = CTRNN(2, 12, 2, fused=False, generator=torch.Generator().manual_seed(0), **kw)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 9, 2)
    outs = []
    for net in (a, b):
        torch.manual_seed(7)
        out, rates = net(x)
        (out.pow(2).mean() + rates.mean()).backward()
        outs.append((out, {n: p.grad.clone() for n, p in net.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-6, rtol=1e-5)
    for name in outs[0][1]:
        torch.testing.assert_close(outs[0][1][name], outs[1][1][name], atol=1e-6, rtol=1e-4)


def test_unfused_loop_supports_double_backward():
    net = CTRNN(2, 8, 1, fused=False)
    x = torch.randn(2, 5, 2, requires_grad=True)
    out, _ = net(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    g.pow(2).sum().backward()  # gradient penalty
    assert net.weight_rec.grad is not None and net.weight_rec.grad.abs().sum() > 0
