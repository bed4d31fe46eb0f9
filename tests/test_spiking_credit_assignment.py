"""convert() and BioConverter on spiking networks, through the recurrent core's protocol."""

import pytest
import torch
from torch import nn

from bionn.learning import convert, mirror, recurrent_feedback
from bionn.plasticity import BioConverter
from bionn.spiking import SpikingLayer, SpikingRNN, membrane_loss


def _task(n, g, steps=25):
    """Which of two input channels fires faster."""
    y = torch.randint(0, 2, (n,), generator=g)
    rate = torch.full((n, steps, 2), 0.1)
    rate[torch.arange(n), :, y] = 0.5
    return torch.bernoulli(rate, generator=g), y


def _net(g):
    return SpikingRNN(2, 24, 2, dt=1.0, e_fraction=0.75, t_refractory=0.0, input_gain=3.0, generator=g)


def _train(model, g, steps=60, after_step=None):
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(steps):
        x, y = _task(32, g)
        out, _ = model(x)
        loss = membrane_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step(model)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("method", ["fa", "usf", "brsf", "frsf", "kp", "wm"])
def test_convert_trains_a_spiking_rnn_under_dale(method):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = _net(g)
    model, report = convert(net, method, generator=torch.Generator().manual_seed(1))
    assert report.names == ["input", "recurrent", "readout"]
    assert set(recurrent_feedback(model)) == {"input", "recurrent", "readout"}
    w0 = model.weight_rec.detach().clone()
    losses = _train(model, g, after_step=mirror if method == "wm" else None)
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6 - 0.05, losses
    w = model.weight_rec.detach()
    assert not torch.equal(w, w0)
    assert bool((w[:, :18] >= 0).all()) and bool((w[:, 18:] <= 0).all())  # Dale holds
    if method in ("usf", "frsf", "brsf"):
        w_rec, b_rec = recurrent_feedback(model)["recurrent"]
        assert bool((torch.sign(b_rec) == torch.sign(w_rec)).all())


def test_convert_gradients_of_a_spiking_rnn_leave_backprop():
    """fa changes the recurrent and input gradients, not the readout's."""
    g = torch.Generator().manual_seed(0)
    net = _net(g)
    fa = convert(net, "fa", generator=torch.Generator().manual_seed(1)).model
    x, y = _task(16, g)
    grads = []
    for m in (net, fa):
        out, _ = m(x)
        membrane_loss(out, y).backward()
        grads.append({k: p.grad.clone() for k, p in m.connection_parameters().items()})
    torch.testing.assert_close(grads[0]["readout"], grads[1]["readout"])
    assert not torch.allclose(grads[0]["recurrent"], grads[1]["recurrent"])


def test_convert_constrain_feedback_and_dfa_refusal_on_spiking_rnn():
    g = torch.Generator().manual_seed(0)
    net = _net(g)
    kp = convert(net, "kp", constrain_feedback=True).model
    _, b = recurrent_feedback(kp)["recurrent"]
    assert bool((b[:, :18] >= 0).all()) and bool((b[:, 18:] <= 0).all())
    with pytest.raises(ValueError, match="dfa.*not supported on a recurrent model"):
        convert(net, "dfa", output_dim=2)


def test_sparse_spiking_rnn_converts():
    from bionn.circuits import Connectivity

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(20, 20, generator=g) < 0.3).float()
    net = SpikingRNN(2, 20, 2, connectivity=Connectivity(mask).to_sparse(), t_refractory=0.0,
                     e_fraction=0.8, input_gain=3.0, generator=g)
    assert net.sparse
    fa = convert(net, "fa").model
    losses = _train(fa, g, steps=25)
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6
    assert bool((fa.weight_rec.detach()[(net.structure.col >= 16)] <= 0).all())


def test_bioconverter_on_a_spiking_rnn():
    g = torch.Generator().manual_seed(0)
    net = _net(g)
    bio = BioConverter({"fuzzy_learning_rates": True, "crystallization": True,
                        "rejuvenation": {"every": 2}}).convert(net)
    model = bio.model
    assert model is not net
    assert "weight_in, weight_rec, weight_out" in str(bio.report)
    biases = BioConverter({"fuzzy_learning_rates": True, "include_bias": True}).convert(net)
    assert "bias_out" in str(biases.report)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    bio.attach(opt)
    for _ in range(6):
        x, y = _task(16, g)
        out, _ = model(x)
        loss = membrane_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bio.steps == 6
    w = model.weight_rec.detach()
    assert bool((w[:, :18] >= 0).all()) and bool((w[:, 18:] <= 0).all())
    # with a credit-assignment rule on top (convert first, then BioConverter)
    both = BioConverter({"fuzzy_learning_rates": True}).convert(convert(net, "fa").model)
    out, _ = both.model(_task(4, g)[0])
    assert out.shape == (4, 25, 2)


@pytest.mark.parametrize("method", ["fa", "dfa", "frsf", "kp"])
def test_convert_a_feedforward_spiking_stack(method):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(SpikingLayer(2, 30, synapse="delta", t_refractory=0.0, reset="subtract",
                                     V_reset=0.0, R=20.0),
                        SpikingLayer(30, 2, synapse="delta", t_refractory=0.0, reset="subtract",
                                     V_reset=0.0, R=20.0))
    with torch.no_grad():
        net[0].linear.weight.mul_(8.0)
    model, report = convert(net, method, output_dim=2, generator=torch.Generator().manual_seed(1))
    assert report.names == ["0.linear", "1.linear"]
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(30):
        x, y = _task(32, g)
        spikes = model(x)
        loss = torch.nn.functional.cross_entropy(spikes.sum(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-6:]) / 6 < sum(losses[:6]) / 6 - 0.02, losses
    assert model[0].linear.weight.grad is not None
