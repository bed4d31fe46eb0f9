"""Feedback-alignment family: hand-derived updates, convert().model, metrics."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from bionn.learning import (
    METHODS,
    FeedbackConv1d,
    convert,
    feedback_layers,
    gradient_alignment,
    matrix_angle,
    mirror,
    norm_ratios,
    weight_angles,
)


@pytest.fixture(autouse=True)
def _float64():  # exact comparisons with hand formulas
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(),
                         nn.Linear(3, 2))


def batch(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.randn(n, 2, generator=g)


def mse_half(y, t):
    return 0.5 * (y - t).pow(2).sum()


def forward_by_hand(net, x):
    W = [net[i].weight.detach() for i in (0, 2, 4)]
    b = [net[i].bias.detach() for i in (0, 2, 4)]
    h1 = torch.tanh(x @ W[0].T + b[0])
    h2 = torch.tanh(h1 @ W[1].T + b[1])
    return h1, h2, h2 @ W[2].T + b[2]


def check_grads(net, x, deltas, hs):
    for layer, d, h in zip((net[0], net[2], net[4]), deltas, hs, strict=True):
        torch.testing.assert_close(layer.weight.grad, d.T @ h)
        torch.testing.assert_close(layer.bias.grad, d.sum(0))


# --------------------------------------------------------------------------- rules
def test_bp_equals_autograd_mlp_and_conv():
    x, t = batch()
    ref = mlp()
    net = convert(ref, "bp").model
    mse_half(ref(x), t).backward()
    mse_half(net(x), t).backward()
    for a, b in zip(ref.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    torch.manual_seed(0)
    cref = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, groups=1), nn.Flatten(), nn.Linear(4, 2))
    cnet = convert(cref, "bp").model
    xi = torch.randn(2, 2, 6, 6)
    cref(xi).pow(2).sum().backward()
    cnet(xi).pow(2).sum().backward()
    for a, b in zip(cref.parameters(), cnet.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


class _Rule:  # a feedback rule by protocol (bionn.functional.feedback)
    signal = None

    def __init__(self, B, kp):
        self.B, self.kp = B, kp

    def feedback(self, weight):
        return self.B


@pytest.mark.parametrize("kp", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", ["none", "weight", "input"])
def test_linear_feedback_equals_the_generic_function(kp, shape, bias, frozen):
    """The lean linear Function (FA-family linear layers) gives the generic Function's
    gradients; a non-kp B that requires grad gets none."""
    from bionn.functional.feedback import LINEAR, _FeedbackFunction, feedback_linear

    g = torch.Generator().manual_seed(0)
    grads = []
    for lean in (True, False):
        x = torch.randn(*shape, generator=g.manual_seed(1)).requires_grad_(frozen != "input")
        w = torch.randn(4, 5, generator=g).requires_grad_(frozen != "weight")
        b = torch.randn(4, generator=g).requires_grad_() if bias else None
        B = torch.randn(4, 5, generator=g).requires_grad_()
        y = (feedback_linear(x, w, b, _Rule(B, kp)) if lean
             else _FeedbackFunction.apply(x, w, b, B, LINEAR, None, kp))
        if lean and (x.requires_grad or kp):  # else B is unused: plain autograd
            assert type(y.grad_fn).__name__ == "_LinearFeedbackBackward"
        y.pow(2).sum().backward()
        grads.append([t.grad for t in (x, w, b, B) if t is not None])
    for lean_grad, ref_grad in zip(*grads, strict=True):
        if ref_grad is None:
            assert lean_grad is None
        else:
            torch.testing.assert_close(lean_grad, ref_grad)
    assert (grads[0][-1] is not None) == kp


@pytest.mark.parametrize("method", ["fa", "usf", "brsf", "frsf", "wm", "kp"])
def test_fa_family_hand_derived(method):
    """delta_L = e; delta_l = (delta_{l+1} B_{l+1}) * f'(a_l); dW_l = delta_l^T h_{l-1}."""
    x, t = batch()
    net = convert(mlp(), method, generator=torch.Generator().manual_seed(3)).model
    mse_half(net(x), t).backward()
    B = [net[i].feedback_weight for i in (0, 2, 4)]  # B used in that forward (brsf too)
    h1, h2, y = forward_by_hand(net, x)
    d3 = y - t
    d2 = (d3 @ B[2]) * (1 - h2**2)
    d1 = (d2 @ B[1]) * (1 - h1**2)
    check_grads(net, x, (d1, d2, d3), (x, h1, h2))
    # and it is not backprop
    d2_bp = (d3 @ net[4].weight.detach()) * (1 - h2**2)
    assert not torch.allclose(net[2].weight.grad, d2_bp.T @ h1)


def test_dfa_hand_derived():
    """delta_L = e; delta_l = (e B_{l+1}) * f'(a_l), B_{l+1} of shape (n_out, n_l)."""
    x, t = batch()
    net = convert(mlp(), "dfa", output_dim=2).model
    mse_half(net(x), t).backward()
    h1, h2, y = forward_by_hand(net, x)
    e = y - t
    B2, B3 = net[2].rule.weight_feedback, net[4].rule.weight_feedback
    assert B2.shape == (2, 4) and B3.shape == (2, 3)
    d2 = (e @ B3) * (1 - h2**2)
    d1 = (e @ B2) * (1 - h1**2)
    check_grads(net, x, (d1, d2, e), (x, h1, h2))


def test_dfa_requires_output_error_shape():
    x, t = batch()
    net = convert(mlp(), "dfa", output_dim=3).model
    with pytest.raises(RuntimeError, match="output_dim"):
        mse_half(net(x), t).backward()


def test_sign_symmetry_definitions():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    usf = convert(lin, "usf").model
    torch.testing.assert_close(usf.feedback_weight,
                               torch.sign(usf.weight) / math.sqrt(3 * 6))
    usf_x = convert(lin, "usf", init="xavier", scale=2.0).model
    torch.testing.assert_close(usf_x.feedback_weight,
                               2 * math.sqrt(2 / (6 + 4)) * torch.sign(lin.weight))
    frsf = convert(lin, "frsf").model
    b0 = frsf.feedback_weight.clone()
    assert torch.equal(torch.sign(b0), torch.sign(frsf.weight))
    frsf(torch.randn(2, 6))
    assert torch.equal(frsf.feedback_weight, b0)
    with torch.no_grad():
        frsf.weight.neg_()
    torch.testing.assert_close(frsf.feedback_weight, -b0)  # magnitudes fixed, signs follow W

    brsf = convert(lin, "brsf").model
    x = torch.randn(2, 6)
    brsf(x)
    b1 = brsf.feedback_weight.clone()
    assert torch.equal(torch.sign(b1), torch.sign(brsf.weight))
    assert b1.abs().max() <= 1 / math.sqrt(6)
    brsf(x)
    b2 = brsf.feedback_weight.clone()
    assert not torch.equal(b1, b2)  # redrawn each training forward
    brsf.eval()
    brsf(x)
    assert torch.equal(brsf.feedback_weight, b2)  # not in eval
    brsf.train()
    with torch.no_grad():
        brsf(x)
    assert torch.equal(brsf.feedback_weight, b2)  # nor without grad


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_fa_matches_matrix_formula(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=groups)
    layer = convert(conv, "fa").model
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    out = layer(x)
    g = torch.randn_like(out)
    out.backward(g)
    B = layer.feedback_weight
    kw = {"stride": 2, "padding": 1, "dilation": 1, "groups": groups}
    torch.testing.assert_close(x.grad, conv2d_input(x.shape, B, g, **kw))
    torch.testing.assert_close(layer.weight.grad, conv2d_weight(x, conv.weight.shape, g, **kw))
    torch.testing.assert_close(layer.bias.grad, g.sum((0, 2, 3)))
    assert not torch.allclose(x.grad, conv2d_input(x.shape, layer.weight, g, **kw))


def test_conv_dfa_projects_broadcast_error():
    torch.manual_seed(0)
    net = convert(nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(3, 4, 3, stride=2), nn.Flatten(),
                                nn.Linear(4 * 4 * 4, 5)),
                  "dfa", output_dim=5).model
    x = torch.randn(2, 2, 9, 9)
    h = torch.relu(net[0](x)).detach()
    out = net(x)
    e = torch.randn_like(out)
    out.backward(e)
    B = net[2].rule.weight_feedback  # (5, 3, 3, 3)
    e_map = e[:, :, None, None].expand(2, 5, 4, 4)
    dh = conv2d_input(h.shape, B, e_map, stride=2)
    delta = dh * (h > 0)
    torch.testing.assert_close(net[0].weight.grad, conv2d_weight(x, (3, 2, 3, 3), delta,
                                                                  padding=1))


def test_conv_dfa_grouped_layer_projects_over_all_input_channels():
    torch.manual_seed(0)
    net = convert(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(6, 4, 3, stride=2, groups=2), nn.Flatten(),
                                nn.Linear(4 * 4 * 4, 5)),
                  "dfa", output_dim=5).model
    B = net[2].rule.weight_feedback
    assert B.shape == (5, 6, 3, 3)  # ungrouped projection: all 6 input channels
    x = torch.randn(2, 4, 9, 9)
    h = torch.relu(net[0](x)).detach()
    out = net(x)
    e = torch.randn_like(out)
    out.backward(e)
    e_map = e[:, :, None, None].expand(2, 5, 4, 4)
    delta = conv2d_input(h.shape, B, e_map, stride=2) * (h > 0)
    torch.testing.assert_close(net[0].weight.grad, conv2d_weight(x, (6, 4, 3, 3), delta,
                                                                  padding=1))


def test_kp_same_update_and_convergence():
    torch.manual_seed(0)
    net = convert(mlp(), "kp").model
    lr, wd = 0.1, 0.01
    opt = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wd)
    layer = net[2]
    B = layer.rule.weight_feedback
    assert any(p is B for p in opt.param_groups[0]["params"])
    diff0 = (layer.weight - B).detach().clone()
    x, t = batch()
    mse_half(net(x), t).backward()
    torch.testing.assert_close(B.grad, layer.weight.grad)
    opt.step()
    torch.testing.assert_close((layer.weight - B).detach(), (1 - lr * wd) * diff0)

    # toy regression: angles between W and B shrink
    torch.manual_seed(1)
    teacher = torch.randn(5, 2)
    net = convert(mlp(2), "kp").model
    opt = torch.optim.SGD(net.parameters(), lr=0.05, weight_decay=0.05)
    before = weight_angles(net)
    for _ in range(200):
        xb = torch.randn(32, 5)
        opt.zero_grad()
        F.mse_loss(net(xb), xb @ teacher).backward()
        opt.step()
    after = weight_angles(net)
    for name in before:
        assert after[name] < before[name] - 20, (name, before[name], after[name])


@pytest.mark.parametrize("growth_control", [False, True])
def test_weight_mirror_moves_b_toward_w(growth_control):
    torch.manual_seed(0)
    net = convert(nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3)), "wm").model
    before = weight_angles(net)
    eta = 0.5 if growth_control else 0.05  # growth control keeps |B| large: slower turn
    for _ in range(30):
        mirror(net, eta=eta, growth_control=growth_control)
    after = weight_angles(net)
    for name in before:
        assert before[name] > 70 and after[name] < 30, (before, after)
    conv = convert(nn.Conv2d(3, 4, 3), "wm").model
    a0 = weight_angles(conv)[""]
    for _ in range(30):
        mirror(conv, eta=0.05)
    assert weight_angles(conv)[""] < a0 - 40


# --------------------------------------------------------------------------- convert
class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def resnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         Block(4), Block(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


def test_convert_counts_report_and_shared_parameters():
    net = resnet()
    original = {n: m for n, m in net.named_modules()
                if isinstance(m, (nn.Linear, nn.Conv2d))}
    copied, report = convert(net, "fa")
    assert len(report) == 6 and report.names == list(original)
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in original.values())  # untouched
    assert copied[0].weight is not net[0].weight
    torch.testing.assert_close(copied[0].weight, net[0].weight)
    same, report = convert(net, "fa", inplace=True)
    assert same is net and set(feedback_layers(net)) == set(original)
    for name, old in original.items():
        new = net.get_submodule(name)
        assert isinstance(new, type(old)) and new.weight is old.weight and new.bias is old.bias
    assert report.layers[0]["feedback_shape"] == (4, 3, 3, 3)
    assert "credit assignment: fa" in str(report)
    fresh = convert(resnet(), "fa", copy_weights=False, init="xavier").model
    assert not torch.allclose(fresh[0].weight, resnet()[0].weight)
    assert torch.all(fresh[0].bias == 0)
    sd = fresh.state_dict()
    assert "0.rule.weight_feedback" in sd and "3.conv1.rule.weight_feedback" in sd
    fresh.to(torch.float32)
    assert fresh[0].rule.weight_feedback.dtype == torch.float32


@pytest.mark.parametrize("method", METHODS)
def test_resnet_trains_with_every_method(method):
    net = convert(resnet(), method, output_dim=3).model
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
    w0 = net[3].conv1.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if method == "wm":
            mirror(net)
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert not torch.equal(w0, net[3].conv1.weight)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (8, 3)


def test_convert_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        convert(mlp(), "backprop")
    with pytest.raises(ValueError, match="output_dim"):
        convert(mlp(), "dfa")
    with pytest.raises(ValueError, match="init must be one of"):
        convert(mlp(), "fa", init="orthogonal")
    with pytest.raises(ValueError, match="no nn.Linear, nn.Conv1d or nn.Conv2d"):
        convert(nn.Sequential(nn.ReLU()), "fa")
    with pytest.raises(ValueError, match="already converted"):
        convert(convert(mlp(), "fa").model, "fa")


def test_constrain_norm_keeps_norm_and_optimizer_parameter():
    net = mlp()
    raw = net[2].weight
    norm0 = raw.norm().item()
    conv = convert(net, "fa", constrain_norm=True, inplace=True).model
    opt = torch.optim.SGD(conv.parameters(), lr=0.5)
    assert conv[2].parametrizations.weight.original is raw
    assert any(p is raw for p in opt.param_groups[0]["params"])
    w0 = conv[2].weight.detach().clone()
    x, t = batch()
    for _ in range(5):
        opt.zero_grad()
        mse_half(conv(x), t).backward()
        opt.step()
    assert abs(conv[2].weight.norm().item() - norm0) < 1e-9
    assert not torch.allclose(conv[2].weight, w0)


# --------------------------------------------------------------------------- metrics
def test_angle_and_ratio_values():
    torch.manual_seed(0)
    w = torch.randn(30, 40)
    assert matrix_angle(w, 2 * w) == pytest.approx(0, abs=1e-9)
    assert matrix_angle(w, -w) == pytest.approx(180, abs=1e-9)
    assert matrix_angle(torch.randn(300, 400), torch.randn(300, 400)) == pytest.approx(90, abs=1)
    lin = convert(nn.Linear(4, 3), "usf", init="fixed_norm").model
    assert norm_ratios(lin)[""] == pytest.approx(1.0)
    assert weight_angles(convert(mlp(), "bp").model) == pytest.approx({"0": 0, "2": 0, "4": 0}, abs=1e-9)


def test_fa_aligns_on_toy_task_and_gradient_alignment():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Linear(20, 3))
    net = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 3))
    with torch.no_grad():  # small forward weights: the updates, not the init, dominate W
        for p in net.parameters():
            p.mul_(0.1)
    net = convert(net, "fa").model
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x_test = torch.randn(256, 10)
    with torch.no_grad():
        y_test = teacher(x_test)
    angle0 = weight_angles(net)["2"]
    assert angle0 > 80
    for _ in range(200):
        xb = torch.randn(64, 10)
        with torch.no_grad():
            yb = teacher(xb)
        opt.zero_grad()
        F.mse_loss(net(xb), yb).backward()
        opt.step()
    assert weight_angles(net)["2"] < 45  # W aligns with the fixed B
    grads_before = [p.grad.clone() for p in net.parameters()]
    ga = gradient_alignment(net, F.mse_loss, x_test, y_test)
    assert ga["2"] == pytest.approx(0, abs=1e-5)  # last layer gets the true error
    assert ga["0"] < 45  # hidden-layer FA updates within 45 degrees of backprop
    assert all(torch.equal(a, p.grad) for a, p in zip(grads_before, net.parameters(),
                                                         strict=True))


@pytest.mark.parametrize("method", ["fa", "kp", "dfa"])
def test_conv1d_is_converted(method):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv1d(4, 3, 3, padding="same",
                                                                        padding_mode="circular"),
                        nn.Flatten(), nn.Linear(3 * 10, 2))
    x, y = torch.randn(5, 2, 10), torch.randint(0, 2, (5,))
    fa, report = convert(net, method, output_dim=2)
    assert report.names == ["0", "2", "4"] and isinstance(fa[0], FeedbackConv1d)
    F.cross_entropy(fa(x), y).backward()
    assert all(fa[i].weight.grad is not None for i in (0, 2, 4))
    if method == "fa":  # B := W gives backprop's gradients exactly
        ref = copy.deepcopy(net)
        F.cross_entropy(ref(x), y).backward()
        fa.zero_grad()
        with torch.no_grad():
            for i in (0, 2, 4):
                fa[i].rule.weight_feedback.copy_(fa[i].weight)
        F.cross_entropy(fa(x), y).backward()
        for i in (0, 2, 4):
            torch.testing.assert_close(fa[i].weight.grad, ref[i].weight.grad)


def test_unconverted_weight_layers_are_named_in_a_warning():
    net = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 8, 2))
    with pytest.warns(UserWarning, match=r"0 \(Conv3d\)"):
        fa, report = convert(net, "fa")
    assert report.names == ["2"]


def test_weight_mirror_every_k_calls_mirrors_on_the_first_of_each_k():
    torch.manual_seed(0)
    net = convert(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), "wm").model
    ref = copy.deepcopy(net)
    history = []
    for call in range(7):
        before = net[0].rule.weight_feedback.clone()
        torch.manual_seed(100 + call)
        mirror(net, eta=0.05, every=3)
        history.append(not torch.equal(before, net[0].rule.weight_feedback))
        if call % 3 == 0:  # the reference: a plain per-call mirror on the same draws
            torch.manual_seed(100 + call)
            mirror(ref, eta=0.05)
    assert history == [True, False, False, True, False, False, True]
    for i in (0, 2):
        assert torch.equal(net[i].rule.weight_feedback, ref[i].rule.weight_feedback)
    with pytest.raises(ValueError, match="every"):
        mirror(net, every=0)


def test_brsf_draws_only_for_layers_whose_backward_uses_b():
    net = convert(mlp(), "brsf").model
    x, t = batch()
    state = torch.get_rng_state()
    net[0](x)  # the input needs no gradient: B of the first layer is never used
    assert torch.equal(torch.get_rng_state(), state)
    mse_half(net(x), t).backward()
    # the layers that used B drew it in the forward, in order, with the global RNG
    torch.set_rng_state(state)
    expected = []
    for i in (2, 4):
        r = torch.empty_like(net[i].weight)
        net[i].rule._sampler.fill_(r).abs_()
        expected.append(torch.sign(net[i].weight.detach()) * r)
    assert torch.equal(net[2].feedback_weight, expected[0])
    assert torch.equal(net[4].feedback_weight, expected[1])


def test_brsf_float32_draws_in_one_compiled_pass():
    """On float32 CPU weights brSF's |R| comes from the Philox uniforms (one key per layer
    and forward, from the global generator, in layer order), the same numbers redraw()
    gives; the first layer still draws nothing."""
    from bionn.functional import philox

    if not philox.available():
        pytest.skip("no C++ compiler: the compiled draw cannot be built")
    net = convert(mlp().float(), "brsf").model
    x, t = (v.float() for v in batch())
    state = torch.get_rng_state()
    mse_half(net(x), t).backward()
    torch.set_rng_state(state)
    for i in (2, 4):
        rule = net[i].rule
        bound = rule._sampler.bound * rule._sampler.scale
        r = bound * philox.uniform(net[i].weight.numel(), philox.draw_key()).view_as(
            net[i].weight)
        assert torch.equal(net[i].feedback_weight, torch.sign(net[i].weight.detach()) * r)
        assert float(r.max()) <= bound
    drawn = [net[i].feedback_weight for i in (2, 4)]
    torch.set_rng_state(state)
    for i, b in zip((2, 4), drawn, strict=True):
        net[i].rule.magnitude.zero_()
        net[i].rule.redraw()  # the same numbers from the same generator state
        assert torch.equal(net[i].feedback_weight, b)


def test_weight_mirror_float32_noise_is_the_philox_normals():
    from bionn.functional import philox

    if not philox.available():
        pytest.skip("no C++ compiler: the compiled generator cannot be built")
    net = convert(mlp().float(), "wm").model
    layer = net[2]
    b0 = layer.rule.weight_feedback.detach().clone()
    w = layer.weight.detach().clone()
    torch.manual_seed(3)
    layer.rule.mirror(layer.weight, eta=0.05, noise_amplitude=0.2, n_samples=16)
    torch.manual_seed(3)
    x = 0.2 * philox.normal(16 * w.shape[1], philox.draw_key()).view(16, w.shape[1])
    torch.testing.assert_close(layer.rule.weight_feedback, b0 + 0.05 * (x @ w.T).T @ x)
