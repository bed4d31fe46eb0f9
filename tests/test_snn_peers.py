"""The same LIF networks in bionn, snnTorch 1.0 and Norse 1.1 (test extras, ``bionn[snn]``):
identical spikes over a sequence and the same gradients (cosine >= 0.9999 per parameter),
with the conventions mapped as in docs/training_spiking.md ("Same networks in snnTorch
and Norse"). Float64 throughout, so that rounding (exp vs the peers' products) cannot move
a spike across the threshold."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bionn.functional.surrogate import Arctan, FastSigmoid
from bionn.spiking import SpikingLayer, SpikingRNN

B, T, N_IN, N = 4, 80, 5, 7
MIN_COS = 0.9999


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, T, N_IN, generator=g, dtype=torch.float64) * 2.0
    c = torch.randn(B, T, N, generator=g, dtype=torch.float64)  # loss = sum(c * spikes)
    return x, c


def _fc(seed: int = 1) -> nn.Linear:
    torch.manual_seed(seed)
    fc = nn.Linear(N_IN, N).double()
    with torch.no_grad():
        fc.weight.mul_(3.0)
    return fc


def _check(s_peer, s_ours, pairs) -> None:
    """Identical spikes (and some of them), then cosine per parameter."""
    s_peer = s_peer.to(s_ours.dtype)
    assert 0.05 < float(s_ours.detach().mean()) < 0.6, "the test needs a network that spikes"
    assert float((s_peer - s_ours).detach().abs().max()) == 0.0
    for name, g_peer, g_ours in pairs:
        assert g_peer is not None and g_ours is not None, name
        assert float(g_peer.abs().max()) > 0, name
        assert _cos(g_peer, g_ours) >= MIN_COS, (name, _cos(g_peer, g_ours))


# -- snnTorch ---------------------------------------------------------------------------------
def snntorch_options(beta: float, threshold: float, reset: str) -> dict:
    """bionn SpikingCell options with snnTorch's discrete update, ``dt = 1`` ms:
    ``U_t = beta U_{t-1} + I_t - S_{t-1} U_thr`` (``"subtract"``) or
    ``U_t = beta (1 - S_{t-1}) U_{t-1} + I_t`` (Leaky ``"zero"``)."""
    opts = dict(synapse="delta", tau=-1.0 / math.log(beta), R=1.0 / (1.0 - beta), V_rest=0.0,
                V_th=threshold, t_refractory=0.0, surrogate=Arctan(2.0), scale=1.0,
                detach_reset=True)
    if reset == "subtract":  # the subtracted threshold is not decayed: V_th - V_reset = V_th / beta
        opts.update(reset="subtract", V_reset=threshold - threshold / beta)
    else:
        opts.update(reset="value", V_reset=0.0)
    return opts


def _snn():
    snn = pytest.importorskip("snntorch", reason="snnTorch is a test extra (bionn[snn])")
    from snntorch import surrogate

    atan = surrogate.atan()
    # snnTorch's spikes are float32 whatever the input; keep the dtype (same gradient)
    return snn, lambda x: atan(x).to(x.dtype)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_leaky_matches_snntorch(reset):
    snn, grad = _snn()
    x, c = _data()
    fc = _fc()
    lif = snn.Leaky(beta=torch.tensor(0.85, dtype=torch.float64), threshold=1.0,
                    reset_mechanism=reset, spike_grad=grad)
    mem, out = torch.zeros(B, N, dtype=torch.float64), []
    for t in range(T):
        s, mem = lif(fc(x[:, t]), mem)
        out.append(s)
    s_peer = torch.stack(out, 1)
    (s_peer * c).sum().backward()

    layer = SpikingLayer(N_IN, N, dt=1.0, **snntorch_options(float(lif.beta), 1.0, reset)).double()
    layer.linear.load_state_dict(fc.state_dict())
    s_ours = layer(x)
    (s_ours * c).sum().backward()
    _check(s_peer, s_ours, [("weight", fc.weight.grad, layer.linear.weight.grad),
                            ("bias", fc.bias.grad, layer.linear.bias.grad)])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_rleaky_matches_snntorch(reset):
    snn, grad = _snn()
    x, c = _data()
    fc = _fc()
    lif = snn.RLeaky(beta=torch.tensor(0.85, dtype=torch.float64), linear_features=N,
                     reset_mechanism=reset, spike_grad=grad).double()
    spk, mem, out = torch.zeros(B, N, dtype=torch.float64), torch.zeros(B, N, dtype=torch.float64), []
    for t in range(T):
        spk, mem = lif(fc(x[:, t]), spk, mem)
        out.append(spk)
    s_peer = torch.stack(out, 1)
    (s_peer * c).sum().backward()

    opts = snntorch_options(float(lif.beta), 1.0, "subtract" if reset == "subtract" else "zero")
    if reset == "zero":
        # RLeaky's zero reset acts after the next step's integration,
        # U_t = (1 - S_{t-1})(beta U_{t-1} + I_t): the neuron is held at 0 for one step
        opts["t_refractory"] = 1.0
    net = SpikingRNN(N_IN, N, 1, dt=1.0, bias=True, readout="linear", **opts).double()
    with torch.no_grad():
        net.weight_in.copy_(fc.weight)
        net.weight_rec.copy_(lif.recurrent.weight)
        net.bias_rec.copy_(fc.bias + lif.recurrent.bias)  # both biases add to the same drive
    _, s_ours = net(x)
    (s_ours * c).sum().backward()
    _check(s_peer, s_ours, [("weight_in", fc.weight.grad, net.weight_in.grad),
                            ("weight_rec", lif.recurrent.weight.grad, net.weight_rec.grad),
                            ("bias_in", fc.bias.grad, net.bias_rec.grad),
                            ("bias_rec", lif.recurrent.bias.grad, net.bias_rec.grad)])


# -- Norse ------------------------------------------------------------------------------------
DT_S, TAU_MEM_INV, TAU_SYN_INV = 1e-3, 100.0, 200.0  # Norse: SI seconds, 1/s


def norse_options(dt_s: float, tau_mem_inv: float, tau_syn_inv: float | None, *,
                  detach_reset: bool) -> dict:
    """bionn SpikingCell options with Norse's Euler step (bionn ``dt = 1000 dt_s`` ms):
    ``I_t = (1 - dt tau_syn_inv) I_{t-1} + u_t``, ``v_t = v_{t-1} + dt tau_mem_inv (v_leak - v_{t-1} + I_t)``."""
    dt = 1e3 * dt_s
    opts = dict(method="euler", tau=1e3 / tau_mem_inv, R=1.0, V_rest=0.0, V_th=1.0, V_reset=0.0,
                t_refractory=0.0, surrogate=FastSigmoid(slope=1.0), scale=1.0, reset="value",
                detach_reset=detach_reset)
    if tau_syn_inv is None:
        opts["synapse"] = "delta"
    else:  # exp(-dt / tau_syn) = 1 - dt tau_syn_inv
        opts.update(synapse="exponential", tau_syn=-dt / math.log1p(-dt_s * tau_syn_inv))
    return opts


def _norse():
    pytest.importorskip("norse", reason="Norse is a test extra (bionn[snn])")
    import norse.torch as norse
    from norse.torch.functional.lif import LIFParameters

    p = LIFParameters(tau_syn_inv=torch.tensor(TAU_SYN_INV), tau_mem_inv=torch.tensor(TAU_MEM_INV),
                      v_leak=torch.tensor(0.0), v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0))
    return norse, p


def test_lif_matches_norse():
    norse, p = _norse()
    from norse.torch.functional.lif import LIFFeedForwardState

    x, c = _data()
    fc = _fc()
    zeros = torch.zeros(B, N, dtype=torch.float64)
    s_peer, _ = norse.LIF(p, dt=DT_S)(fc(x).transpose(0, 1), LIFFeedForwardState(zeros, zeros))
    s_peer = s_peer.transpose(0, 1)  # Norse is time-first
    (s_peer * c).sum().backward()

    # Norse's feed-forward step does not detach its reset (its recurrent step does)
    layer = SpikingLayer(N_IN, N, dt=1e3 * DT_S, **norse_options(DT_S, TAU_MEM_INV, TAU_SYN_INV,
                                                                 detach_reset=False)).double()
    layer.linear.load_state_dict(fc.state_dict())
    s_ours = layer(x)
    (s_ours * c).sum().backward()
    _check(s_peer, s_ours, [("weight", fc.weight.grad, layer.linear.weight.grad),
                            ("bias", fc.bias.grad, layer.linear.bias.grad)])


def test_lif_box_matches_norse():
    norse, p = _norse()
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState, LIFBoxParameters

    x, c = _data()
    fc = _fc()
    with torch.no_grad():
        fc.weight.mul_(2.0)
    pb = LIFBoxParameters(tau_mem_inv=p.tau_mem_inv, v_leak=p.v_leak, v_th=p.v_th, v_reset=p.v_reset)
    state = LIFBoxFeedForwardState(torch.zeros(B, N, dtype=torch.float64))
    cell, u, out = norse.LIFBoxCell(pb, dt=DT_S), fc(x), []
    for t in range(T):
        z, state = cell(u[:, t], state)
        out.append(z)
    s_peer = torch.stack(out, 1)
    (s_peer * c).sum().backward()

    layer = SpikingLayer(N_IN, N, dt=1e3 * DT_S, **norse_options(DT_S, TAU_MEM_INV, None,
                                                                 detach_reset=False)).double()
    layer.linear.load_state_dict(fc.state_dict())
    s_ours = layer(x)
    (s_ours * c).sum().backward()
    _check(s_peer, s_ours, [("weight", fc.weight.grad, layer.linear.weight.grad),
                            ("bias", fc.bias.grad, layer.linear.bias.grad)])


def test_lif_recurrent_matches_norse():
    norse, p = _norse()
    from norse.torch.functional.lif import LIFState

    x, c = _data()
    torch.manual_seed(2)
    rnn = norse.LIFRecurrent(N_IN, N, p, autapses=True, dt=DT_S).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        rnn.input_weights.copy_(torch.randn(N, N_IN, generator=g, dtype=torch.float64) * 2.0)
        rnn.recurrent_weights.copy_(torch.randn(N, N, generator=g, dtype=torch.float64) * 0.5)
    zeros = torch.zeros(B, N, dtype=torch.float64)
    s_peer, _ = rnn(x.transpose(0, 1), LIFState(zeros, zeros, zeros))
    s_peer = s_peer.transpose(0, 1)
    (s_peer * c).sum().backward()

    net = SpikingRNN(N_IN, N, 1, dt=1e3 * DT_S, readout="linear",
                     **norse_options(DT_S, TAU_MEM_INV, TAU_SYN_INV, detach_reset=True)).double()
    with torch.no_grad():
        net.weight_in.copy_(rnn.input_weights)
        net.weight_rec.copy_(rnn.recurrent_weights)
    _, s_ours = net(x)
    (s_ours * c).sum().backward()
    _check(s_peer, s_ours, [("input_weights", rnn.input_weights.grad, net.weight_in.grad),
                            ("recurrent_weights", rnn.recurrent_weights.grad, net.weight_rec.grad)])
