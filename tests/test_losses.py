import pytest
import torch

from bionn.losses import RNNLoss, masked_cross_entropy, masked_mse, per_neuron_rate


def test_masked_mse_ignores_unscored_steps():
    out = torch.zeros(2, 4, 1)
    target = torch.ones(2, 4, 1)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out[:, 2:] = 100.0  # errors where the mask is zero do not count
    assert masked_mse(out, target, mask).item() == pytest.approx(1.0)
    weighted = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out2 = torch.zeros(2, 4, 1)
    out2[0, 0] = 3.0
    assert masked_mse(out2, target, weighted).item() == pytest.approx(4.0)


def test_cross_entropy_uses_target_channel():
    targets = torch.zeros(1, 2, 3)
    targets[0, :, 2] = 1
    good = torch.tensor([[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0]]])
    bad = torch.tensor([[[10.0, 0.0, 0.0], [10.0, 0.0, 0.0]]])
    assert masked_cross_entropy(good, targets) < 1e-3 < masked_cross_entropy(bad, targets)


def test_regularisers_match_their_formulas():
    torch.manual_seed(0)
    rates = torch.rand(3, 5, 4)
    out = torch.randn(3, 5, 2)
    target = torch.randn(3, 5, 2)
    w = {"input": torch.randn(4, 2), "recurrent": torch.randn(4, 4), "readout": torch.randn(2, 4)}
    loss = RNNLoss(l2={"recurrent": 0.5, "readout": 0.1}, rate_mean=2.0, rate_std=3.0, rate_cv=4.0)
    total, terms = loss(out, target, rates, weights=w)
    rbar = rates.mean(dim=(0, 1))
    expected = {
        "task": (out - target).pow(2).mean(),
        "l2_recurrent": 0.5 * w["recurrent"].pow(2).mean(),
        "l2_readout": 0.1 * w["readout"].pow(2).mean(),
        "rate_mean": 2.0 * rbar.mean(),
        "rate_std": 3.0 * rbar.std(),
        "rate_cv": 4.0 * rbar.std() / rbar.mean(),
    }
    assert set(terms) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(terms[k], v)
    torch.testing.assert_close(total, sum(expected.values()))


def test_rate_terms_are_differentiable_and_masked():
    rates = torch.rand(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rbar = per_neuron_rate(rates, mask)
    torch.testing.assert_close(rbar, rates[:, 0].mean(0))
    total, _ = RNNLoss(rate_mean=1.0)(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), rates, mask)
    total.backward()
    assert rates.grad[:, 1:].abs().sum() == 0 and rates.grad[:, 0].abs().sum() > 0


def test_bad_loss_settings():
    with pytest.raises(ValueError, match="task loss"):
        RNNLoss(task="hinge")
    with pytest.raises(ValueError, match="rate_std"):
        RNNLoss(rate_std=-1)
    with pytest.raises(ValueError, match="weights"):
        RNNLoss(l2={"recurrent": 1.0})(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
