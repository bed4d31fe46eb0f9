"""e-prop (bionn.learning.eprop): the factorization check against autograd, feedback kinds, learning."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from bionn.constraints import raw_parameter
from bionn.learning import EProp, convert, eprop_gradients, eprop_rnn
from bionn.learning.eprop import _loss_fn
from bionn.spiking import SpikingLayer, SpikingRNN

WEIGHTS = ("weight_in", "weight_rec", "weight_out", "bias_rec", "bias_out")


def _stopped(net: SpikingRNN) -> SpikingRNN:
    """A copy whose recurrent spikes carry no gradient to other neurons (``W_rec sg(z^{t-1})``)."""
    ref = copy.deepcopy(net)
    ref.fused = False  # the fused LIF loop has no recurrent_input to detach
    ref.recurrent_input = lambda r, p: SpikingRNN.recurrent_input(ref, r.detach(), p)
    return ref


def _leaves(net: SpikingRNN) -> dict[str, torch.Tensor]:
    return {k: raw_parameter(net, k) for k in WEIGHTS if getattr(net, k, None) is not None}


def _factorization(net: SpikingRNN, loss: str = "mse", batch: int = 4, steps: int = 60) -> dict[str, float]:
    g = torch.Generator().manual_seed(1)
    net = net.double()
    ref = _stopped(net)
    x = torch.rand(batch, steps, net.n_input, generator=g, dtype=torch.float64)
    if loss == "mse":
        target = torch.randn(batch, steps, net.n_output, generator=g, dtype=torch.float64)
    else:
        target = torch.randint(0, net.n_output, (batch,), generator=g)
    res = eprop_gradients(net, x, target, loss=loss)
    out, spikes = ref(x)
    value = _loss_fn(loss)(out, target)
    value.backward()
    assert torch.equal(spikes, res.spikes)
    assert torch.allclose(res.loss, value.detach(), rtol=0, atol=1e-14)
    assert 0.005 < float(spikes.detach().mean()) < 0.3  # the check means something: the network spikes
    diffs = {}
    ours, theirs = _leaves(net), _leaves(ref)
    for k, p in ours.items():
        q = theirs[k]
        assert p.grad is not None and q.grad is not None, k
        assert float(q.grad.abs().max()) > 0, k
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-13)
        diffs[k] = float((p.grad - q.grad).abs().max())
    return diffs


@pytest.mark.parametrize("cell", ["LIF", "ALIF"])
def test_eprop_equals_autograd_with_stopped_recurrent_spikes(cell):
    g = torch.Generator().manual_seed(0)
    kw = {"tau_a": 100.0, "beta": 200.0} if cell == "ALIF" else {}
    net = eprop_rnn(3, 12, 2, cell=cell, input_gain=4.0, recurrent_gain=1.0, generator=g, **kw)
    diffs = _factorization(net)
    assert set(diffs) == {"weight_in", "weight_rec", "weight_out", "bias_out"}
    assert max(diffs.values()) < 1e-15


@pytest.mark.parametrize("options", [
    {"cell": "ALIF", "readout": "linear", "bias": True, "e_fraction": 0.8},
    {"cell": "ALIF", "bias": True, "e_fraction": 0.8, "sparse": True},
    {"cell": "LIF", "e_fraction": 0.8, "input_mask": (torch.rand(12, 3, generator=torch.Generator().manual_seed(3)) < 0.7).float()},
])
def test_eprop_factorization_with_constraints_and_cross_entropy(options):
    g = torch.Generator().manual_seed(0)
    kw = {"tau_a": 100.0, "beta": 200.0} if options["cell"] == "ALIF" else {}
    net = eprop_rnn(3, 12, 2, input_gain=4.0, recurrent_gain=1.0, generator=g, **kw, **options)
    _factorization(net, loss="cross_entropy")
    if "e_fraction" in options:
        assert bool((net.recurrent_weight()[:, 10:] <= 0).all())


@pytest.mark.parametrize("options", [
    {"cell": "LIF"},                                                           # bionn's value reset
    {"cell": "ALIF", "beta": 2000.0, "tau_a": 50.0},                           # value reset, jumps detached
    {"cell": "ALIF", "beta": 2000.0, "tau_a": 50.0, "reset": "subtract", "detach_jumps": False},
    {"cell": "LIF", "reset": "subtract", "method": "euler", "surrogate": "triangle"},
])
def test_eprop_factorization_on_bionn_variants(options):
    """The traces follow the neuron's own integrator and reset: any LIF/ALIF delta-synapse cell."""
    g = torch.Generator().manual_seed(0)
    net = SpikingRNN(3, 12, 2, synapse="delta", t_refractory=0.0, input_gain=4.0, recurrent_gain=1.0,
                     generator=g, **options)
    _factorization(net)


def test_eprop_rnn_is_bellec_et_al_model():
    """Spikes and voltages of eprop_rnn equal the paper's equations, written out."""
    dt, tau, tau_a, v_th, beta = 1.0, 20.0, 100.0, 20.0, 200.0
    g = torch.Generator().manual_seed(0)
    net = eprop_rnn(3, 10, 2, cell="ALIF", dt=dt, tau=tau, tau_a=tau_a, V_th=v_th, beta=beta,
                    input_gain=4.0, recurrent_gain=1.0, generator=g).double()
    x = torch.rand(2, 80, 3, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, spikes = net(x)
    alpha, rho = math.exp(-dt / tau), math.exp(-dt / tau_a)
    beta_p = beta * (1 - rho)
    w_in, w_rec = net.weight_in.detach(), net.recurrent_weight().detach()
    v = a = z = torch.zeros(2, 10, dtype=torch.float64)
    ours = []
    for t in range(80):   # v^{t+1} = alpha v^t + W_rec z^t + W_in x^{t+1} - z^t v_th
        v = alpha * v + z @ w_rec.T + x[:, t] @ w_in.T - z * v_th
        a = rho * a + z   # a^{t+1} = rho a^t + z^t
        z = (v >= v_th + beta_p * a).double()
        ours.append(z)
    ours = torch.stack(ours, 1)
    assert 0.01 < float(ours.mean()) < 0.3
    assert torch.equal(spikes, ours)


def test_random_feedback_differs_and_adaptive_follows_w_out():
    g = torch.Generator().manual_seed(0)
    net = eprop_rnn(3, 16, 2, cell="ALIF", input_gain=4.0, generator=g)
    x = torch.rand(4, 40, 3, generator=g)
    y = torch.tensor([0, 1, 0, 1])
    grads = {}
    for kind in ("symmetric", "random", "adaptive"):
        net.zero_grad()
        rule = EProp(net, feedback=kind, loss="cross_entropy", generator=torch.Generator().manual_seed(5))
        rule(x, y)
        grads[kind] = {k: p.grad.clone() for k, p in _leaves(net).items()}
    assert torch.equal(grads["random"]["weight_out"], grads["symmetric"]["weight_out"])
    for k in ("weight_in", "weight_rec"):
        cos = F.cosine_similarity(grads["random"][k].flatten(), grads["symmetric"][k].flatten(), 0)
        assert float(cos) < 0.99, k
    # adaptive: B receives W_out's gradient, so an optimizer gives it W_out's update
    net.zero_grad()
    rule = EProp(net, feedback="adaptive", loss="cross_entropy")
    assert [p is rule.feedback_weight for p in rule.parameters()] == [True]
    b0, w0 = rule.feedback_weight.detach().clone(), net.weight_out.detach().clone()
    opt = torch.optim.SGD([*net.parameters(), *rule.parameters()], lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        rule(x, y)
        assert torch.equal(rule.feedback_weight.grad, net.weight_out.grad)
        opt.step()
    db, dw = rule.feedback_weight.detach() - b0, net.weight_out.detach() - w0
    assert float(dw.abs().max()) > 0
    torch.testing.assert_close(db, dw)
    assert torch.equal(rule.feedback(), rule.feedback_weight.detach())
    # random B stays fixed
    fixed = EProp(net, feedback="random")
    assert not list(fixed.parameters()) and fixed.feedback_weight.shape == net.weight_out.shape


def _task(n, g, cue=10, delay=20, read=5):
    """Delayed two-alternative choice: a cue (which pair of four channels fires at 400 Hz for
    10 ms), 20 ms of background (20 Hz), the answer in the last 5 ms."""
    y = torch.randint(0, 2, (n,), generator=g)
    rate = torch.full((n, cue + delay + read, 4), 0.02)
    rate[y == 0, :cue, :2] = 0.4
    rate[y == 1, :cue, 2:] = 0.4
    return torch.bernoulli(rate, generator=g), y


def _decision_loss(out, y):
    """Cross-entropy of the last 5 steps (only dE/dy_t there: e-prop's learning signal)."""
    return F.cross_entropy(out[:, -5:].reshape(-1, out.shape[-1]), y.repeat_interleave(5))


@pytest.mark.parametrize(("cell", "feedback"), [("LIF", "symmetric"), ("ALIF", "random"),
                                                ("ALIF", "adaptive")])
def test_eprop_learns_a_small_task(cell, feedback):
    g = torch.Generator().manual_seed(0)
    kw = {"tau_a": 200.0, "beta": 100.0} if cell == "ALIF" else {}
    net = eprop_rnn(4, 32, 2, cell=cell, input_gain=5.0, tau_out=5.0, bias=True, generator=g, **kw)
    rule = EProp(net, feedback=feedback, loss=_decision_loss, generator=g)
    opt = torch.optim.Adam([*net.parameters(), *rule.parameters()], lr=1e-2,
                           weight_decay=1e-4 if feedback == "adaptive" else 0.0)

    def accuracy():
        x, y = _task(512, torch.Generator().manual_seed(9))
        with torch.no_grad():
            out, _ = net(x)
        return float((out[:, -5:].mean(1).argmax(1) == y).float().mean())

    before = accuracy()
    losses = []
    for _ in range(200):
        x, y = _task(32, g)
        opt.zero_grad()
        losses.append(float(rule(x, y).loss))
        opt.step()
    after = accuracy()
    print(f"{cell} {feedback}: accuracy {before:.3f} -> {after:.3f}, loss {sum(losses[:10]) / 10:.3f} -> "
          f"{sum(losses[-10:]) / 10:.3f}")
    assert before < 0.6
    assert after > 0.95
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_eprop_refuses_what_it_cannot_train():
    with pytest.raises(ValueError, match="synapse='exponential'"):
        EProp(SpikingRNN(2, 4, 1, t_refractory=0.0))
    with pytest.raises(ValueError, match="refractory"):
        eprop_gradients(SpikingRNN(2, 4, 1, synapse="delta"), torch.rand(1, 3, 2), torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="LIF or ALIF"):
        EProp(SpikingRNN(2, 4, 1, cell="AdExIF", synapse="delta", t_refractory=0.0))
    with pytest.raises(ValueError, match="convert"):
        EProp(convert(eprop_rnn(2, 4, 1), "fa").model)
    with pytest.raises(TypeError, match="SpikingRNN"):
        EProp(SpikingLayer(2, 3))
    with pytest.raises(ValueError, match="feedback must be one of"):
        EProp(eprop_rnn(2, 4, 1), feedback="transpose")
    with pytest.raises(ValueError, match="sets"):
        eprop_rnn(2, 4, 1, synapse="exponential")
    with pytest.raises(ValueError, match="feedback must have"):
        eprop_gradients(eprop_rnn(2, 4, 1), torch.rand(1, 3, 2), torch.zeros(1, 3, 1),
                        feedback=torch.zeros(4, 1))
