"""Feedback alignment through time on bionn's CTRNN (``convert(ctrnn, method)``)."""

import pytest
import torch
from torch import nn

from bionn import CTRNN
from bionn.learning import (
    FA,
    METHODS,
    convert,
    feedback_linear,
    matrix_angle,
    mirror,
    recurrent_feedback,
)
from bionn.tasks import make_task

DT = 20.0
TAU = [100.0, 50.0, 40.0, 25.0]  # per-neuron alpha = 0.2, 0.4, 0.5, 0.8


def tiny(activation="tanh", **kw):
    torch.manual_seed(0)
    net = CTRNN(3, 4, 2, dt=DT, tau=TAU, activation=activation, learn_initial_state=True, **kw)
    net = net.double()
    with torch.no_grad():
        net.h0.copy_(torch.randn(4, dtype=torch.float64))
        net.bias_rec.copy_(0.1 * torch.randn(4, dtype=torch.float64))
        net.bias_out.copy_(0.1 * torch.randn(2, dtype=torch.float64))
    return net


def mse(out, target):
    return 0.5 * (out - target).pow(2).sum()


def leaf_grads(net, x, target):
    net.zero_grad(set_to_none=True)
    out, _ = net(x)
    mse(out, target).backward()
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def data(batch=2, steps=3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, steps, 3, generator=g, dtype=torch.float64)
    target = torch.randn(batch, steps, 2, generator=g, dtype=torch.float64)
    return x, target


# --------------------------------------------------------------------------- convert
def test_convert_ctrnn_report_and_rules():
    net = CTRNN(3, 8, 2, e_fraction=0.75)
    fa, report = convert(net, "fa")
    assert fa is not net and net.credit_assignment is None
    assert report.names == ["input", "recurrent", "readout"]
    assert report.layers[1]["feedback_shape"] == (8, 8)
    assert set(fa.credit_assignment) == {"input", "recurrent", "readout"}
    assert all(isinstance(r, FA) for r in fa.credit_assignment.values())
    assert fa.weight_rec is not net.weight_rec  # deep copy
    with pytest.raises(ValueError, match="already converted"):
        convert(fa, "fa")

    wrapped, report = convert(nn.Sequential(nn.Linear(5, 3), nn.Unflatten(1, (1, 3)), CTRNN(3, 6, 2)),
                              "fa")
    assert report.names == ["0", "2.input", "2.recurrent", "2.readout"]
    assert set(recurrent_feedback(wrapped)) == {"2.input", "2.recurrent", "2.readout"}


def test_dfa_and_constrain_norm_refused():
    with pytest.raises(ValueError, match="dfa.*not supported on a recurrent model"):
        convert(CTRNN(3, 8, 2), "dfa", output_dim=2)
    with pytest.raises(ValueError, match="constrain_norm"):
        convert(CTRNN(3, 8, 2), "fa", constrain_norm=True)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "dfa"])
def test_every_method_runs_and_keeps_shapes(method):
    net = convert(CTRNN(3, 8, 2, e_fraction=0.75, preact_noise=0.1), method).model
    out, rates = net(torch.randn(4, 6, 3))
    out.pow(2).mean().backward()
    assert out.shape == (4, 6, 2) and rates.shape == (4, 6, 8)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in net.named_parameters() if "weight" in n and "feedback" not in n)
    # step() follows the same rule
    s = net.initial_state(4)
    y, r, s = net.step(s, torch.randn(4, 3))
    y.sum().backward()


# --------------------------------------------------------------------------- (1) bp == autograd
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("kw", [{}, {"e_fraction": 0.75}])
def test_bp_equals_plain_autograd(fused, kw):
    x, target = data()
    plain = tiny(fused=fused, **kw)
    bp = convert(plain, "bp").model
    ref, got = leaf_grads(plain, x, target), leaf_grads(bp, x, target)
    assert ref.keys() == got.keys()
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus"])
@pytest.mark.parametrize("kw", [{}, {"e_fraction": 0.75}])
def test_fa_with_b_equal_w_is_exact_bptt(activation, kw):
    """The unfused feedback path with B := W (effective, constrained) reproduces BPTT."""
    x, target = data(steps=5)
    plain = tiny(activation, **kw)
    fa = convert(plain, "fa").model
    w = fa.connection_weights()
    with torch.no_grad():
        for k, rule in fa.credit_assignment.items():
            rule.weight_feedback.copy_(w[k])
    ref, got = leaf_grads(plain, x, target), leaf_grads(fa, x, target)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- (2) by hand
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("with_input_rule", [True, False])
def test_fa_through_time_matches_hand_derivation(activation, with_input_rule):
    r"""Euler CTRNN, per-neuron alpha, no noise, L = 1/2 sum_t |y_t - target_t|^2::

        h_t = (1 - a) h_{t-1} + a (W_rec r_{t-1} + W_in x_t + b),  r_t = f(h_t),
        y_t = W_out r_t + c,                                        e_t = y_t - target_t

    FA through time (B_rec replaces W_rec, B_out replaces W_out)::

        dr_t  = B_out^T e_t + B_rec^T (a * delta_{t+1})           (delta_{T+1} = 0)
        delta_t = f'(h_t) * dr_t + (1 - a) * delta_{t+1}
        dW_out = sum_t e_t r_t^T,     dc = sum_t e_t
        dW_rec = sum_t (a * delta_t) r_{t-1}^T
        dW_in  = sum_t (a * delta_t) x_t^T,     db = sum_t a * delta_t
        dh_0   = (1 - a) * delta_1 + f'(h_0) * B_rec^T (a * delta_1)
        dx_t   = B_in^T (a * delta_t)   (W_in^T without an input rule)
    """
    x, target = data(batch=2, steps=3)
    x.requires_grad_(True)
    net = convert(tiny(activation), "fa").model
    if not with_input_rule:
        del net.credit_assignment["input"]
    net.zero_grad()
    out, _ = net(x)
    mse(out, target).backward()

    a = net.alpha.detach()
    f = torch.tanh if activation == "tanh" else torch.relu

    def fprime(h):
        return 1 - torch.tanh(h) ** 2 if activation == "tanh" else (h > 0).to(h.dtype)

    W = {k: v.detach() for k, v in net.connection_weights().items()}
    B = {k: r.weight_feedback for k, r in net.credit_assignment.items()}
    B_in = B.get("input", W["input"])
    b, c = net.bias_rec.detach(), net.bias_out.detach()
    n_steps = x.shape[1]
    h = [net.h0.detach().expand(2, 4)]
    r = [f(h[0])]
    xs = x.detach()
    for t in range(n_steps):
        h.append((1 - a) * h[-1] + a * (r[-1] @ W["recurrent"].T + xs[:, t] @ W["input"].T + b))
        r.append(f(h[-1]))
    y = [r[t] @ W["readout"].T + c for t in range(1, n_steps + 1)]
    torch.testing.assert_close(torch.stack(y, 1), out.detach())
    e = [None] + [y[t - 1] - target[:, t - 1] for t in range(1, n_steps + 1)]

    delta = [None] * (n_steps + 2)
    delta[n_steps + 1] = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(n_steps, 0, -1):
        dr = e[t] @ B["readout"] + (a * delta[t + 1]) @ B["recurrent"]
        delta[t] = fprime(h[t]) * dr + (1 - a) * delta[t + 1]

    ts = range(1, n_steps + 1)
    dW_out = sum(e[t].T @ r[t] for t in ts)
    dc = sum(e[t].sum(0) for t in ts)
    dW_rec = sum((a * delta[t]).T @ r[t - 1] for t in ts)
    dW_in = sum((a * delta[t]).T @ xs[:, t - 1] for t in ts)
    db = sum((a * delta[t]).sum(0) for t in ts)
    dh0 = ((1 - a) * delta[1] + fprime(h[0]) * ((a * delta[1]) @ B["recurrent"])).sum(0)
    dx = torch.stack([(a * delta[t]) @ B_in for t in ts], 1)

    close = dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net.weight_out.grad, dW_out, **close)
    torch.testing.assert_close(net.bias_out.grad, dc, **close)
    torch.testing.assert_close(net.weight_rec.grad, dW_rec, **close)
    torch.testing.assert_close(net.weight_in.grad, dW_in, **close)
    torch.testing.assert_close(net.bias_rec.grad, db, **close)
    torch.testing.assert_close(net.h0.grad, dh0, **close)
    torch.testing.assert_close(x.grad, dx, **close)
    # ... and these are not the BPTT gradients
    bptt = leaf_grads(tiny(activation), x.detach(), target)
    assert not torch.allclose(bptt["weight_rec"], dW_rec)


def test_kp_feedback_gets_the_effective_weight_gradient():
    x, target = data()
    net = convert(tiny(), "kp").model
    leaf_grads(net, x, target)
    for k, name in (("input", "weight_in"), ("recurrent", "weight_rec"),
                    ("readout", "weight_out")):
        torch.testing.assert_close(net.credit_assignment[k].weight_feedback.grad,
                                   getattr(net, name).grad, rtol=1e-10, atol=1e-12)


def test_feedback_linear_functional():
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 3, requires_grad=True)
    rule = FA(w)
    g = torch.randn(5, 4)
    feedback_linear(x, w, None, rule).backward(g)
    torch.testing.assert_close(x.grad, g @ rule.weight_feedback)
    torch.testing.assert_close(w.grad, g.T @ x.detach())
    x.grad = None
    y = feedback_linear(x, w)  # no rule: plain F.linear
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ w.detach())


# --------------------------------------------------------------------------- (3, 4) training
def _train(method, steps, *, e_fraction=None, seed=0):
    timing = {"fixation": 100.0, "stimulus": (300.0, 400.0), "decision": 200.0}
    task = make_task("perceptual_decision_making", dt=DT, timing=timing)
    torch.manual_seed(seed)
    net = CTRNN(task.n_input, 32, task.n_output, dt=DT, tau=100.0, e_fraction=e_fraction,
                spectral_radius=0.5)
    # B from its own stream: the same seed as the weights would give B == W
    net = convert(net, method, generator=torch.Generator().manual_seed(seed + 1000)).model
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    w0 = {k: w.clone() for k, (w, _) in recurrent_feedback(net).items()}
    angles = [{k: matrix_angle(w, b) for k, (w, b) in recurrent_feedback(net).items()}]
    for _ in range(steps):
        batch = task.sample(32, g)
        out, _ = net(batch.inputs)
        loss = ((out - batch.targets).pow(2).mean(-1) * batch.mask).sum() / batch.mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fb = recurrent_feedback(net)
    angles.append({k: matrix_angle(w, b) for k, (w, b) in fb.items()})
    update_angles = {k: matrix_angle(w - w0[k], b) for k, (w, b) in fb.items()}
    with torch.no_grad():
        batch = task.sample(512, torch.Generator().manual_seed(1234))
        acc = task.accuracy(net(batch.inputs)[0], batch).float().mean().item()
    return net, acc, angles, update_angles


def test_fa_trained_ctrnn_learns_decision_making_and_aligns():
    net, acc, (before, after), update = _train("fa", 200)
    assert acc > 0.75, acc  # chance is 0.5 (two choices)
    # W moves towards B: recurrent and readout angles drop, the updates lean on B
    assert after["recurrent"] < before["recurrent"] - 2, (before, after)
    assert after["readout"] < before["readout"] - 5, (before, after)
    assert update["recurrent"] < 88 and update["readout"] < 80, update


def test_dale_holds_after_fa_training():
    net, acc, *_ = _train("fa", 30, e_fraction=0.75)
    w = net.weight_rec.detach()
    n_e = 24
    assert (w[:, :n_e] >= 0).all() and (w[:, n_e:] <= 0).all()
    assert torch.isfinite(w).all()
    assert w[:, :n_e].abs().sum() > 0 and w[:, n_e:].abs().sum() > 0


def test_weight_mirror_aligns_recurrent_feedback():
    net = convert(CTRNN(3, 16, 2, dt=DT, tau=100.0), "wm").model
    before = {k: matrix_angle(w, b) for k, (w, b) in recurrent_feedback(net).items()}
    for _ in range(50):
        mirror(net, eta=0.1, growth_control=True)
    after = {k: matrix_angle(w, b) for k, (w, b) in recurrent_feedback(net).items()}
    assert all(after[k] < before[k] - 30 for k in before), (before, after)


def test_weight_mirror_every_k_computes_recurrent_weights_only_when_it_mirrors():
    net = convert(CTRNN(3, 8, 2, dt=DT, tau=100.0), "wm").model
    computed = []
    weights = net.connection_weights
    net.connection_weights = lambda: computed.append(1) or weights()
    rule = next(iter(net.credit_assignment.values()))
    history = []
    for _ in range(5):
        before = rule.weight_feedback.clone()
        mirror(net, eta=0.1, every=2)
        history.append(not torch.equal(before, rule.weight_feedback))
    assert history == [True, False, True, False, True] and len(computed) == 3


def test_alignment_metrics_cover_ctrnn():
    from bionn.learning import exact_gradients, gradient_alignment, norm_ratios, weight_angles

    x, target = data()

    def loss(out, t):
        return mse(out[0], t)

    bp = convert(tiny(), "bp").model
    assert set(weight_angles(bp)) == {"input", "recurrent", "readout"}
    assert all(a < 1e-4 for a in weight_angles(bp).values())
    assert all(abs(r - 1) < 1e-12 for r in norm_ratios(bp).values())
    assert all(a < 1e-4 for a in gradient_alignment(bp, loss, x, target).values())

    fa = convert(tiny(), "fa", generator=torch.Generator().manual_seed(5)).model
    angles = gradient_alignment(fa, loss, x, target)
    assert set(angles) == {"input", "recurrent", "readout"}
    # the readout's dW = e r^T is exact under FA; the earlier products differ from backprop
    assert angles["readout"] < 1e-4 and angles["recurrent"] > 1 and angles["input"] > 1
    assert fa.weight_rec.grad is None  # measured on a copy
    rules = fa.credit_assignment
    with exact_gradients(fa):
        assert fa.credit_assignment is None
        exact = leaf_grads(fa, x, target)
    assert fa.credit_assignment is rules
    ref = leaf_grads(tiny(), x, target)
    for name in ("weight_in", "weight_rec", "weight_out"):
        torch.testing.assert_close(exact[name], ref[name])


@pytest.mark.parametrize("method", ["fa", "kp", "wm"])
def test_constrain_feedback_gives_b_the_dale_signs_and_mask(method):
    torch.manual_seed(0)
    mask = (torch.rand(12, 12) < 0.5).float()
    net = CTRNN(3, 12, 2, e_fraction=0.75, rec_mask=mask)
    free = convert(net, method, generator=torch.Generator().manual_seed(1)).model
    b_free = free.credit_assignment["recurrent"].weight_feedback.detach()
    assert (b_free[:, :9] < 0).any() and (b_free * (1 - mask)).abs().sum() > 0
    fb = convert(net, method, constrain_feedback=True, generator=torch.Generator().manual_seed(1)).model
    b = fb.credit_assignment["recurrent"].weight_feedback.detach()
    sign = torch.where(torch.arange(12) < 9, 1.0, -1.0)
    assert ((b != 0) == (mask * (b_free != 0) > 0)).all()  # the mask's pattern
    assert (b[:, :9] >= 0).all() and (b[:, 9:] <= 0).all()  # Dale's signs
    # |B| is |B0| up to one factor for E columns and another for I columns (E/I balance)
    ratio = (b.abs() / b_free.abs())[mask > 0]
    cols = torch.arange(12).expand(12, 12)[mask > 0]
    for part in (cols < 9, cols >= 9):
        torch.testing.assert_close(ratio[part], ratio[part][:1].expand(int(part.sum())))
    torch.testing.assert_close((b.abs() * (sign > 0)).sum(), (b.abs() * (sign < 0)).sum())
    from bionn.constraints import spectral_radius
    assert spectral_radius(b) == pytest.approx(spectral_radius(fb.weight_rec), rel=1e-4)
    assert matrix_angle(fb.weight_rec, b) < matrix_angle(free.weight_rec, b_free) - 20


def test_weight_mirror_match_norm_keeps_b_at_w_norm():
    net = convert(CTRNN(3, 16, 2, dt=DT, tau=100.0), "wm").model
    for _ in range(20):
        mirror(net, eta=0.5, match_norm=True)
    for key, (w, b) in recurrent_feedback(net).items():
        torch.testing.assert_close(b.norm(), w.norm())
        assert matrix_angle(w, b) < 45, key
    grown = convert(CTRNN(3, 16, 2, dt=DT, tau=100.0), "wm").model
    for _ in range(20):
        mirror(grown, eta=0.5)
    w, b = recurrent_feedback(grown)["recurrent"]
    assert b.norm() > 5 * w.norm()  # without it the mirror update only grows B
