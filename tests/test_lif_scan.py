"""The fused LIF loop (bionn.functional.lif_scan) against the step-by-step autograd loop."""

import pytest
import torch

from bionn.functional.lif_scan import lif_scan
from bionn.functional.surrogate import make_surrogate, reset, spike
from bionn.spiking import SpikingCell, SpikingLayer, SpikingRNN

F64 = torch.float64


def _reference(drive, v0, beta, gain, offset, v_th, v_reset, scale, sur, mode, d, i0, w, z0):
    """The equations of lif_scan, written with autograd ops step by step."""
    v, i, z, out = v0, i0, z0, []
    for t in range(drive.shape[1]):
        u = drive[:, t] + (z @ w.T if w is not None else 0)
        i = u if d is None else d * i + u
        vp = beta * v + gain * i + offset
        z = spike((vp - v_th) / scale, sur)
        v = reset(vp, z, mode=mode, v_th=v_th, v_reset=v_reset, detach=True)
        out.append(z)
    return torch.stack(out, 1), v, (i if d is not None else None)


@pytest.mark.parametrize("mode", ["subtract", "value"])
@pytest.mark.parametrize("decay", [None, 0.8])
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "arctan", "triangle", "sigmoid"])
def test_lif_scan_matches_the_autograd_loop(mode, decay, recurrent, surrogate):
    g = torch.Generator().manual_seed(0)
    B, T, N = 3, 40, 7
    drive = (torch.randn(B, T, N, generator=g, dtype=F64) * 0.8 + 0.4).requires_grad_()
    v0 = torch.rand(B, N, generator=g, dtype=F64).requires_grad_()
    i0 = (torch.rand(B, N, generator=g, dtype=F64) * 0.1).requires_grad_() if decay else None
    w = (torch.randn(N, N, generator=g, dtype=F64) * 0.4).requires_grad_() if recurrent else None
    z0 = (torch.rand(B, N, generator=g, dtype=F64) < 0.3).to(F64).requires_grad_() if recurrent else None
    beta = torch.rand(N, generator=g, dtype=F64) * 0.5 + 0.4
    gain = torch.rand(N, generator=g, dtype=F64) + 0.5
    offset = torch.randn(N, generator=g, dtype=F64) * 0.1
    v_th, v_reset = torch.tensor(1.0, dtype=F64), torch.tensor(0.1, dtype=F64)
    sur = make_surrogate(surrogate)
    d = None if decay is None else torch.tensor(decay, dtype=F64)
    z1, v1, i1 = _reference(drive, v0, beta, gain, offset, v_th, v_reset, 0.7, sur, mode, d, i0, w, z0)
    z2, v2, i2 = lif_scan(drive, v0, beta=beta, gain=gain, offset=offset, v_th=v_th, v_reset=v_reset,
                          scale=0.7, surrogate=sur, reset=mode, syn_decay=d, i0=i0, w_rec=w, z0=z0)
    assert torch.equal(z1, z2)
    assert 0.1 < float(z1.detach().mean()) < 0.9  # both spike and silent steps are exercised
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-12)
    gz, gv = torch.randn_like(z1), torch.randn_like(v1)
    leaves = [t for t in (drive, v0, i0, w, z0) if t is not None]

    def loss(z, v, i):
        return (z * gz).sum() + (v * gv).sum() + (0.3 * i.sum() if i is not None else 0.0)

    ours = torch.autograd.grad(loss(z2, v2, i2), leaves)
    theirs = torch.autograd.grad(loss(z1, v1, i1), leaves)
    for a, b in zip(ours, theirs, strict=True):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_lif_scan_refuses_bad_arguments():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="drive must be"):
        lif_scan(torch.zeros(2, 4), torch.zeros(2, 4), beta=0.9)
    with pytest.raises(ValueError, match="reset must be"):
        lif_scan(x, torch.zeros(2, 4), beta=0.9, reset="zero")
    with pytest.raises(ValueError, match=r"w_rec must be \(4, 4\)"):
        lif_scan(x, torch.zeros(2, 4), beta=0.9, w_rec=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="beta is a constant"):
        lif_scan(x, torch.zeros(2, 4), beta=torch.tensor(0.9, requires_grad=True))


LIF_OPTIONS = dict(V_rest=-0.5, V_reset=0.0, V_th=1.0, R=2.0, tau=8.0, t_refractory=0.0)


@pytest.mark.parametrize("synapse", ["delta", "exponential"])
@pytest.mark.parametrize("mode", ["subtract", "value"])
def test_spiking_layer_fused_equals_step_by_step(synapse, mode):
    torch.manual_seed(0)
    fused = SpikingLayer(5, 6, "LIF", synapse=synapse, reset=mode, tau_syn=4.0, **LIF_OPTIONS).double()
    plain = SpikingLayer(5, 6, "LIF", synapse=synapse, reset=mode, tau_syn=4.0, fused=False,
                         **LIF_OPTIONS).double()
    plain.load_state_dict(fused.state_dict())
    assert fused.cell.fusable
    x = torch.rand(4, 50, 5, dtype=F64) * (8 if synapse == "delta" else 2)
    z1, s1 = fused(x, return_state=True)
    z2, s2 = plain(x, return_state=True)
    assert torch.equal(z1, z2) and 0.05 < float(z1.detach().mean()) < 0.9
    torch.testing.assert_close(s1.neuron["V"], s2.neuron["V"], rtol=0, atol=1e-12)
    (z1.sum() + s1.neuron["V"].sum()).backward()
    (z2.sum() + s2.neuron["V"].sum()).backward()
    for (k, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-11, msg=k)


@pytest.mark.parametrize("synapse", ["delta", "exponential"])
def test_spiking_rnn_fused_equals_step_by_step_with_dale_and_continued_state(synapse):
    g = torch.Generator().manual_seed(1)
    kw = dict(e_fraction=0.8, input_gain=3.0, recurrent_gain=1.0, synapse=synapse, reset="value",
              **LIF_OPTIONS)
    fused = SpikingRNN(3, 20, 2, generator=g, **kw).double()
    plain = SpikingRNN(3, 20, 2, fused=False, **kw).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.rand(4, 60, 3, dtype=F64, generator=g)
    # a trial in two halves, the second continued from the first's state (truncated BPTT)
    outs = []
    for net in (fused, plain):
        o1, r1, s = net(x[:, :30], return_state=True)
        o2, r2 = net(x[:, 30:], s)
        loss = (o1 ** 2).sum() + (o2 ** 2).sum() + r2.sum()
        loss.backward()
        outs.append((torch.cat([r1, r2], 1), torch.cat([o1, o2], 1)))
    assert torch.equal(outs[0][0], outs[1][0]) and 0.02 < float(outs[0][0].detach().mean()) < 0.8
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=1e-10)
    for (k, p), q in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert q.grad is not None and float(q.grad.abs().max()) > 0, k
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=k)
    assert bool((fused.weight_rec[:, 16:] <= 0).all())  # Dale's law holds on the fused path


def test_which_cells_run_fused():
    assert SpikingCell("LIF", 3, t_refractory=0.0, synapse="delta").fusable
    assert not SpikingCell("LIF", 3, synapse="delta").fusable  # refractory period (5 ms default)
    assert not SpikingCell("ALIF", 3, t_refractory=0.0).fusable
    assert not SpikingCell("LIF", 3, t_refractory=0.0, learn=("tau",)).fusable
    assert not SpikingCell("LIF", 3, t_refractory=0.0, detach_reset=False).fusable
    assert not SpikingCell("LIF", 3, t_refractory=0.0, synapse="conductance").fusable


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_layer_on_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = SpikingLayer(8, 16, "LIF", synapse="exponential", **LIF_OPTIONS).double()
    x = torch.rand(2, 40, 8, dtype=F64) * 2
    z_cpu = layer(x)
    z_gpu = layer.cuda()(x.cuda())
    assert torch.equal(z_cpu, z_gpu.cpu())


def test_in_place_surrogate_derivatives_equal_the_plain_ones():
    from bionn.functional.surrogate import SURROGATES

    x = torch.linspace(-3, 3, 601, dtype=F64)
    for name, cls in SURROGATES.items():
        s = cls()
        y = x.clone()
        assert s.derivative_(y) is y
        torch.testing.assert_close(y, s.derivative(x), rtol=1e-14, atol=1e-15, msg=name)
