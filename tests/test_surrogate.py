"""Spikes with surrogate gradients (bionn.functional.surrogate): the formulas, the reset,
and the same gradients as snnTorch's and Norse's surrogates (test extras)."""

from __future__ import annotations

import math

import pytest
import torch

from bionn.functional.surrogate import (
    SURROGATES,
    Arctan,
    Exponential,
    FastSigmoid,
    Sigmoid,
    Triangle,
    make_surrogate,
    reset,
    spike,
)

X = torch.linspace(-2.0, 2.0, 401, dtype=torch.float64)
X = X[X != 0]  # the peers spike at x > 0, bionn at x >= 0: they differ only at 0

FORMULAS = {
    FastSigmoid(slope=3.0): lambda x: 1 / (1 + 3.0 * x.abs()) ** 2,
    Arctan(alpha=2.0): lambda x: 1.0 / (1 + (math.pi * x) ** 2),
    Triangle(gamma=0.3, width=0.5): lambda x: 0.3 * (1 - x.abs() / 0.5).clamp_min(0),
    Exponential(alpha=2.0, beta=3.0): lambda x: 2.0 * torch.exp(-3.0 * x.abs()),
    Sigmoid(slope=4.0): lambda x: 4.0 * torch.sigmoid(4 * x) * (1 - torch.sigmoid(4 * x)),
}


def grad_of(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    s = fn(x)
    s.sum().backward()
    return s.detach(), x.grad


@pytest.mark.parametrize("surrogate", list(FORMULAS), ids=lambda s: s.name)
def test_forward_is_heaviside_and_backward_is_the_formula(surrogate):
    s, g = grad_of(surrogate, X)
    assert torch.equal(s, (X >= 0).double())
    torch.testing.assert_close(g, FORMULAS[surrogate](X), rtol=1e-12, atol=1e-12)
    # where the surrogate peaks
    assert g.argmax().item() in (len(X) // 2 - 1, len(X) // 2)


def test_every_surrogate_is_registered_and_made_by_name():
    assert set(SURROGATES) == {s.name for s in FORMULAS}
    assert make_surrogate("fast_sigmoid", slope=3.0) == FastSigmoid(3.0)
    assert make_surrogate("arctan") == Arctan(alpha=2.0)
    assert make_surrogate(Triangle()) == Triangle()
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        make_surrogate("nope")
    with pytest.raises(ValueError, match="takes"):
        make_surrogate("arctan", slope=1.0)
    with pytest.raises(ValueError, match="> 0"):
        make_surrogate("sigmoid", slope=-1.0)


def test_surrogates_change_gradients_not_spikes():
    spikes = {s.name: grad_of(s, X) for s in FORMULAS}
    first = next(iter(spikes.values()))[0]
    assert all(torch.equal(s, first) for s, _ in spikes.values())
    grads = [g for _, g in spikes.values()]
    assert not any(torch.allclose(a, b) for i, a in enumerate(grads) for b in grads[i + 1:])


def test_no_graph_without_grad():
    x = torch.randn(5, requires_grad=True)
    with torch.no_grad():
        assert spike(x).grad_fn is None
    assert spike(torch.randn(5)).grad_fn is None


def test_reset_modes_and_detach():
    v = torch.tensor([1.5, 0.25], requires_grad=True)
    s = spike(v - 1.0, FastSigmoid(1.0))
    assert reset(v, s, mode="subtract", v_th=1.0).tolist() == [0.5, 0.25]
    assert reset(v, s, mode="value", v_reset=-0.5).tolist() == [-0.5, 0.25]
    assert reset(v, s, mode="none") is v
    # detached: d(reset)/dv is the identity where no reset; with the spike's gradient
    # through the subtraction it is 1 - sigma'(x) (x = v - 1)
    (g_detached,) = torch.autograd.grad(reset(v, s, mode="subtract").sum(), v, retain_graph=True)
    (g_through,) = torch.autograd.grad(reset(v, s, mode="subtract", detach=False).sum(), v)
    assert g_detached.tolist() == [1.0, 1.0]
    expected = 1 - 1 / (1 + (v.detach() - 1).abs()) ** 2
    torch.testing.assert_close(g_through, expected)
    with pytest.raises(ValueError, match="reset mode"):
        reset(v, s, mode="zero")


# -- the peers' surrogates -----------------------------------------------------------------------
def _snntorch():
    return pytest.importorskip("snntorch.surrogate", reason="snnTorch is a test extra (bionn[snn])")


@pytest.mark.parametrize("name, ours", [
    ("fast_sigmoid", FastSigmoid(slope=25.0)),
    ("atan", Arctan(alpha=2.0)),
    ("sigmoid", Sigmoid(slope=25.0)),
])
def test_same_gradients_as_snntorch(name, ours):
    sur = _snntorch()
    theirs = getattr(sur, name)()  # snnTorch's defaults: slope 25, alpha 2
    s_ours, g_ours = grad_of(ours, X)
    s_theirs, g_theirs = grad_of(lambda x: theirs(x), X)
    assert torch.equal(s_ours, s_theirs.to(s_ours.dtype))
    torch.testing.assert_close(g_ours, g_theirs.to(g_ours.dtype), rtol=1e-6, atol=1e-12)


def test_same_gradients_as_norse():
    pytest.importorskip("norse", reason="Norse is a test extra (installed without torchvision)")
    from norse.torch.functional.threshold import superspike_fn, triangle_fn

    # Norse 1.1's SuperSpike ignores its alpha (its backward is 1 / (|x| + 1)^2): slope 1
    for fn, ours in [(lambda x: superspike_fn(x, torch.tensor(100.0)), FastSigmoid(slope=1.0)),
                     (lambda x: triangle_fn(x, 0.3), Triangle(gamma=0.3))]:
        s_ours, g_ours = grad_of(ours, X)
        s_theirs, g_theirs = grad_of(fn, X)
        assert torch.equal(s_ours, s_theirs.to(s_ours.dtype))
        torch.testing.assert_close(g_ours, g_theirs.to(g_ours.dtype), rtol=1e-6, atol=1e-12)
