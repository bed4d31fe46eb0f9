"""ConvSpikingRNN: convolutional recurrent spiking networks on the recurrent core."""

import pytest
import torch
import torch.nn.functional as F

from bionn.learning import convert, recurrent_feedback
from bionn.recurrent import detach_state
from bionn.spiking import ConvSpikingRNN, SpikingRNN, membrane_loss


def _net(**kw):
    opts = {"e_fraction": 0.75, "input_gain": 8.0, "t_refractory": 0.0,
            "generator": torch.Generator().manual_seed(0)}
    opts.update(kw)
    return ConvSpikingRNN(1, 4, (8, 8), 2, **opts)


def _blobs(n, g, steps=10):
    """A bright 2x2 blob in the left (label 0) or right (label 1) half of a dim noisy 8x8
    image, shown for ``steps`` steps."""
    y = torch.randint(0, 2, (n,), generator=g)
    img = torch.rand(n, 1, 8, 8, generator=g) * 0.2
    row = torch.randint(1, 6, (n,), generator=g)
    col = torch.randint(0, 3, (n,), generator=g) + 5 * y
    for i in range(n):
        img[i, 0, row[i]:row[i] + 2, col[i]:col[i] + 2] = 1.0
    return img[:, None].expand(-1, steps, -1, -1, -1), y


def _accuracy(model, x, y):
    with torch.no_grad():
        out, _ = model(x)
    return (out.amax(1).argmax(-1) == y).float().mean().item()


def _train(model, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    losses = []
    for _ in range(steps):
        x, y = _blobs(32, g)
        loss = membrane_loss(model(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _conv_by_hand(z, w, bias=None):
    """Stride-1 cross-correlation with zero 'same' padding as explicit shifted sums."""
    k = w.shape[-1]
    pad = k // 2
    h, wd = z.shape[-2:]
    zp = F.pad(z, (pad, pad, pad, pad))
    out = z.new_zeros(z.shape[0], w.shape[0], h, wd)
    for i in range(k):
        for j in range(k):
            out = out + torch.einsum("oc,bchw->bohw", w[:, :, i, j], zp[:, :, i:i + h, j:j + wd])
    if bias is not None:
        out = out + bias[:, None, None]
    return out


@pytest.mark.parametrize("pool,readout,synapse,features", [
    ("avg", "membrane", "exponential", 4),
    ("none", "linear", "delta", 4 * 8 * 8),
    ("avg", "membrane", "conductance", 4),
])
def test_shapes(pool, readout, synapse, features):
    net = _net(pool=pool, readout=readout, synapse=synapse)
    x = torch.rand(3, 6, 1, 8, 8)
    out, z, state = net(x, return_state=True)
    assert out.shape == (3, 6, 2) and z.shape == (3, 6, 256)
    assert net.sheet(z).shape == (3, 6, 4, 8, 8)
    assert net.connection_weights()["input"].shape == (4, 1, 3, 3)
    assert net.connection_weights()["recurrent"].shape == (4, 4, 3, 3)
    assert net.connection_weights()["readout"].shape == (2, features)
    assert state.r.shape == (3, 256) and state.neuron["V"].shape == (3, 256)
    if synapse != "delta":
        assert state.syn[0].shape == ((3, 2, 256) if synapse == "conductance" else (3, 256))
    assert state.out.shape == (3, 2)
    o, r, s = net.step(net.initial_state(3), x[:, 0])
    assert o.shape == (3, 2) and r.shape == (3, 256)
    torch.testing.assert_close(r, z[:, 0])


def test_dale_holds_on_the_recurrent_kernel_after_adam_steps():
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
    net = _net(e_fraction=None, sign=sign)
    pre_e, pre_i = sign > 0, sign < 0

    def holds(w):
        return bool((w[:, pre_e] >= 0).all() and (w[:, pre_i] <= 0).all())

    w0 = net.connection_weights()["recurrent"].detach().clone()
    assert holds(w0) and bool((w0[:, pre_e] > 0).any() and (w0[:, pre_i] < 0).any())
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.rand(4, 8, 1, 8, 8)
    for _ in range(5):
        # push every recurrent weight up (inhibitory ones cannot cross zero) and train the output
        loss = -net.connection_weights()["recurrent"].sum() + net(x)[0].pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = net.connection_weights()["recurrent"].detach()
    assert not torch.equal(w, w0)
    assert holds(w)
    assert isinstance(net.connection_parameters()["recurrent"], torch.nn.Parameter)


def test_sequence_equals_the_equations_by_hand():
    """u_t = conv(|W_raw| sign[pre], z_{t-1}) + conv(W_in, x_t) + b, through the cell, with the
    convolutions written as explicit shifted sums."""
    torch.manual_seed(1)
    net = ConvSpikingRNN(2, 3, (5, 6), 2, sign=torch.tensor([1.0, 1.0, -1.0]), in_kernel=3,
                         rec_kernel=5, bias=True, input_gain=10.0, recurrent_gain=3.0, synapse="exponential",
                         t_refractory=0.0, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        net.bias_rec.copy_(torch.tensor([0.5, -0.3, 0.2]))
    x = torch.rand(2, 12, 2, 5, 6, dtype=torch.float64)
    out, z = net(x)
    raw = net.connection_parameters()["recurrent"].detach()
    w_rec = raw.abs() * torch.tensor([1.0, 1.0, -1.0], dtype=raw.dtype)[None, :, None, None]
    state = net.initial_state(2)
    spikes = []
    for t in range(x.shape[1]):
        u = (_conv_by_hand(state.r.view(2, 3, 5, 6), w_rec)
             + _conv_by_hand(x[:, t], net.weight_in.detach(), net.bias_rec.detach()))
        state = net.cell(state, u.flatten(1))
        spikes.append(state.r)
    spikes = torch.stack(spikes, 1)
    assert spikes.sum() > 0 and spikes[:, 1:].sum() < spikes.numel() / 2
    assert torch.equal(z.detach(), spikes)
    # and the hook alone, on arbitrary spikes
    r = (torch.rand(2, 90, dtype=torch.float64) < 0.3).double()
    got = net.recurrent_input(r, net.prepare())
    torch.testing.assert_close(got, _conv_by_hand(r.view(2, 3, 5, 6), w_rec).flatten(1))
    # readout: leaky membrane on the channel-averaged spikes
    y = F.linear(spikes.view(2, 12, 3, 30).mean(-1), net.weight_out.detach(), net.bias_out.detach())
    kappa = torch.exp(-net.dt / net.tau_out)
    m, ys = torch.zeros(2, 2, dtype=torch.float64), []
    for t in range(12):
        m = kappa * m + (1 - kappa) * y[:, t]
        ys.append(m)
    torch.testing.assert_close(out.detach(), torch.stack(ys, 1))


def test_one_by_one_kernels_on_a_single_position_are_a_spiking_rnn():
    """H = W = 1 with 1x1 kernels: the convolutions are (post, pre) matrices."""
    g = torch.Generator().manual_seed(0)
    conv = ConvSpikingRNN(3, 6, (1, 1), 2, in_kernel=1, rec_kernel=1, e_fraction=0.5, pool="none",
                          input_gain=6.0, recurrent_gain=2.0, t_refractory=0.0, generator=g)
    dense = SpikingRNN(3, 6, 2, e_fraction=0.5, t_refractory=0.0, fused=False)
    with torch.no_grad():
        dense.weight_in.copy_(conv.weight_in[:, :, 0, 0])
        dense.parametrizations.weight_rec.original.copy_(
            conv.connection_parameters()["recurrent"][:, :, 0, 0])
        dense.weight_out.copy_(conv.weight_out)
    x = torch.rand(4, 20, 3)
    out_c, z_c = conv(x[..., None, None])
    out_d, z_d = dense(x)
    assert z_c.sum() > 0
    assert torch.equal(z_c, z_d)
    torch.testing.assert_close(out_c, out_d)


def test_translation_equivariance_away_from_the_border():
    net = ConvSpikingRNN(1, 4, (24, 24), 2, e_fraction=0.5, input_gain=12.0, recurrent_gain=4.0,
                         t_refractory=0.0, generator=torch.Generator().manual_seed(0)).double()
    x = torch.zeros(2, 6, 1, 24, 24, dtype=torch.float64)
    x[..., 9:13, 9:13] = torch.rand(2, 6, 1, 4, 4, dtype=torch.float64) + 0.5
    shifted = torch.roll(x, (2, -2), (-2, -1))
    _, z, s = net(x, return_state=True)
    _, z_s, s_s = net(shifted, return_state=True)
    a, b = net.sheet(z.detach()), net.sheet(z_s.detach())
    assert a.sum() > 0
    # activity spreads beyond the input blob through the recurrence (and stays off the border)
    assert a[..., :8, :].sum() + a[..., 13:, :].sum() > 0
    assert torch.equal(torch.roll(a, (2, -2), (-2, -1)), b)
    torch.testing.assert_close(torch.roll(net.sheet(s.neuron["V"]), (2, -2), (-2, -1)),
                               net.sheet(s_s.neuron["V"]))


def test_gradients_reach_input_recurrent_and_readout_weights():
    net = _net(bias=True, recurrent_gain=2.0)
    x, y = _blobs(8, torch.Generator().manual_seed(0))
    membrane_loss(net(x)[0], y).backward()
    params = net.connection_parameters()
    assert set(params) == {"input", "recurrent", "readout"}
    for name, p in {**params, "bias": net.bias_rec}.items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("cell", ["LIF", "ALIF"])
def test_truncated_bptt_halves_equal_one_run(cell):
    net = _net(cell=cell, recurrent_gain=2.0)
    x = torch.rand(3, 16, 1, 8, 8)
    out, z, _ = net(x, return_state=True)
    out1, z1, s1 = net(x[:, :7], return_state=True)
    out2, z2, _ = net(x[:, 7:], state=detach_state(s1), return_state=True)
    assert z.sum() > 0
    assert torch.equal(torch.cat([z1, z2], 1), z)
    torch.testing.assert_close(torch.cat([out1, out2], 1), out)


def test_static_image_expanded_over_time_is_the_same_sequence():
    net = _net(bias=True)
    with torch.no_grad():
        net.bias_rec.copy_(torch.tensor([3.0, -2.0, 1.0, 4.0]))
    img = torch.rand(2, 1, 1, 8, 8, requires_grad=True)
    out_a, z_a = net(img.expand(-1, 9, -1, -1, -1))
    out_b, z_b = net(img.expand(-1, 9, -1, -1, -1).clone())
    assert torch.equal(z_a, z_b)
    torch.testing.assert_close(out_a, out_b)
    (ga,) = torch.autograd.grad(out_a.sum(), img)
    (gb,) = torch.autograd.grad(out_b.sum(), img)
    torch.testing.assert_close(ga, gb)


def test_trains_to_tell_left_from_right():
    torch.manual_seed(0)
    net = _net(pool_size=2)
    x_test, y_test = _blobs(200, torch.Generator().manual_seed(99))
    before = _accuracy(net, x_test, y_test)
    losses = _train(net, 30)
    after = _accuracy(net, x_test, y_test)
    assert after >= 0.85 and after > before + 0.2, (before, after)
    assert sum(losses[-5:]) < sum(losses[:5])


def test_convert_fa_trains_under_dale_and_changes_the_feedback():
    torch.manual_seed(0)
    net = _net(pool_size=2, recurrent_gain=2.0)
    fa = convert(net, "fa", generator=torch.Generator().manual_seed(1)).model
    assert set(recurrent_feedback(fa)) == {"input", "recurrent", "readout"}
    assert recurrent_feedback(fa)["recurrent"][1].shape == (4, 4, 3, 3)
    # the readout's gradient is exact, the recurrent and input gradients go through B
    x, y = _blobs(16, torch.Generator().manual_seed(5))
    grads = []
    for m in (net, fa):
        membrane_loss(m(x)[0], y).backward()
        grads.append({k: p.grad.clone() for k, p in m.connection_parameters().items()})
        m.zero_grad()
    torch.testing.assert_close(grads[0]["readout"], grads[1]["readout"])
    assert not torch.allclose(grads[0]["recurrent"], grads[1]["recurrent"])
    assert not torch.allclose(grads[0]["input"], grads[1]["input"])
    x_test, y_test = _blobs(200, torch.Generator().manual_seed(99))
    before = _accuracy(fa, x_test, y_test)
    _train(fa, 25)
    after = _accuracy(fa, x_test, y_test)
    assert after >= 0.85 and after > before + 0.2, (before, after)
    w = fa.connection_weights()["recurrent"].detach()
    assert bool((w[:, :3] >= 0).all() and (w[:, 3:] <= 0).all())


def test_sign_constrained_feedback_on_convolution_kernels():
    # B of the recurrent kernel takes Dale's signs of the presynaptic channel (axis 1)
    net = _net(pool_size=2)
    fa = convert(net, "fa", constrain_feedback=True, generator=torch.Generator().manual_seed(1)).model
    b = recurrent_feedback(fa)["recurrent"][1]
    assert b.shape == (4, 4, 3, 3)
    assert bool((b[:, :3] >= 0).all() and (b[:, 3:] <= 0).all()) and float(b.abs().sum()) > 0
    x, y = _blobs(8, torch.Generator().manual_seed(5))
    membrane_loss(fa(x)[0], y).backward()
    assert fa.connection_parameters()["recurrent"].grad is not None


@pytest.mark.parametrize("method", ["usf", "kp"])
def test_other_rules_on_conductance_synapses(method):
    """Conductance synapses split each convolution into its E and I parts (an autograd
    feedback kernel): the rules still apply and give finite gradients."""
    net = _net(synapse="conductance", V_rest=-60.0, V_reset=-60.0, V_th=-50.0, input_gain=100.0,
               recurrent_gain=2.0)
    model = convert(net, method, generator=torch.Generator().manual_seed(1)).model
    x, y = _blobs(4, torch.Generator().manual_seed(0))
    out, z = model(x)
    assert z.sum() > 0
    membrane_loss(out, y).backward()
    for name, p in model.connection_parameters().items():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and p.grad.abs().sum() > 0, name


def test_dfa_is_refused():
    with pytest.raises(ValueError, match="dfa.*not supported on a recurrent model"):
        convert(_net(), "dfa", output_dim=2)


@pytest.mark.parametrize("kwargs,name", [
    ({"e_fraction": 0.0}, "e_fraction"),
    ({"e_fraction": 1.5}, "e_fraction"),
    ({"e_fraction": 1.0}, "e_fraction"),
    ({"e_fraction": None, "sign": torch.tensor([1.0, -1.0])}, "sign"),
    ({"e_fraction": None, "sign": torch.tensor([1.0, -1.0, 0.5, 1.0])}, "sign"),
    ({"in_kernel": 2}, "in_kernel"),
    ({"in_kernel": 0}, "in_kernel"),
    ({"rec_kernel": 4}, "rec_kernel"),
    ({"rec_kernel": -1}, "rec_kernel"),
    ({"pool": "max"}, "pool"),
    ({"pool_size": 9}, "pool_size"),
    ({"readout": "spikes"}, "readout"),
    ({"tau_out": 0.5, "dt": 1.0}, "tau_out"),
])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _net(**kwargs)


@pytest.mark.parametrize("args,name", [
    ((0, 4, (8, 8), 2), "in_channels"),
    ((1, 0, (8, 8), 2), "channels"),
    ((1, 4, (8,), 2), "size"),
    ((1, 4, (8, 0), 2), "size"),
    ((1, 4, (8, 8), 0), "n_output"),
])
def test_bad_sizes_name_the_argument(args, name):
    with pytest.raises(ValueError, match=name):
        ConvSpikingRNN(*args)


@pytest.mark.parametrize("shape", [(2, 5, 8, 8), (2, 5, 2, 8, 8), (2, 5, 1, 8, 7), (2, 5, 64)])
def test_wrong_input_shape_is_refused(shape):
    with pytest.raises(ValueError, match="input must be"):
        _net()(torch.rand(*shape))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_as_on_cpu():
    net = _net(recurrent_gain=2.0).double()
    x = torch.rand(3, 8, 1, 8, 8, dtype=torch.float64)
    out, z = net(x)
    gpu = convert(net, "fa", generator=torch.Generator().manual_seed(1)).model.cuda()
    out_g, z_g = net.cuda()(x.cuda())
    assert torch.equal(z_g.cpu(), z)
    torch.testing.assert_close(out_g.cpu(), out)
    membrane_loss(gpu(x.cuda())[0], torch.zeros(3, dtype=torch.long, device="cuda")).backward()
    assert all(p.grad.is_cuda for p in gpu.connection_parameters().values())
