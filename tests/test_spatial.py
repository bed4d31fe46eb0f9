"""Spatially embedded areas and networks: shapes, Dale's law, time constants, feedback forms,
delays, queries and a tiny training run."""

import copy

import pytest
import torch
import torch.nn.functional as F

from bionn.circuits import CellType, CellTypeTable, TypeConnection, motif
from bionn.rate.spatial import SpatialArea, SpatialNetwork, TopDown


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def two_area(**kw):
    kw.setdefault("top_down", [TopDown(1, 0)])
    return SpatialNetwork(motif("E-I", channels=4), [(8, 8), (4, 4)], 1, 3, generator=gen(), **kw)


def test_shapes_static_and_sequence():
    net = two_area()
    out, rates = net(torch.rand(2, 1, 8, 8), steps=4)
    rec = net.record(rates)
    assert out.shape == (2, 4, 3) and rates.shape == (2, 4, 5 * 64 + 5 * 16)
    assert rec.rates[0].shape == (2, 4, 5, 8, 8) and rec.rates[1].shape == (2, 4, 5, 4, 4)
    out, rates = net(torch.rand(2, 6, 1, 8, 8))
    rec = net.record(rates)
    assert out.shape == (2, 6, 3) and rec.steps == 6
    # A differently sized image is resized to the first sheet.
    out, _ = net(torch.rand(2, 1, 5, 5), steps=2)
    assert out.shape == (2, 2, 3)


def test_input_errors():
    net = two_area()
    with pytest.raises(ValueError, match="needs steps"):
        net(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        net(torch.rand(2, 3, 8, 8), steps=2)
    with pytest.raises(ValueError, match="must be"):
        net(torch.rand(2, 8, 8), steps=2)


def test_top_down_validation():
    with pytest.raises(ValueError, match="later area to an earlier"):
        TopDown(0, 1)
    with pytest.raises(ValueError, match="mode must be one of"):
        TopDown(1, 0, mode="subtractive")
    with pytest.raises(ValueError, match="has types"):
        two_area(top_down=[TopDown(1, 0, cell_types=("VIP",))])
    with pytest.raises(ValueError, match="does not exist"):
        two_area(top_down=[TopDown(2, 0)])


def _all_signed_weights(net):
    """(effective weight, expected sign per input channel) of every Dale-constrained conv."""
    out = []
    for area in net.areas:
        for key, holder in area.synapses.items():
            pre = key.split("->")[0]
            out.append((holder.weight, area.table[pre].sign))
    for area in net.areas[1:]:
        out.append((area.input_synapse.weight, 1))  # E outputs of the previous area
    for p in net.top_down:
        out.append((p.weight, 1))
    return out


def test_dale_holds_after_optimizer_steps():
    net = two_area(top_down=[TopDown(1, 0), TopDown(1, 0, mode="multiplicative", cell_types=("I",))])
    opt = torch.optim.SGD(net.parameters(), lr=5.0)  # large steps push raw weights across zero
    for _ in range(3):
        out, _ = net(torch.rand(4, 1, 8, 8), steps=3)
        loss = -out.sum() + out.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    raws = [h.parametrizations.weight.original for a in net.areas for h in a.synapses.values()]
    assert any((r < 0).any() for r in raws)  # raw weights did cross zero ...
    for w, sign in _all_signed_weights(net):
        assert ((w * sign) >= 0).all()       # ... but effective weights kept their sign
    # Rows of non-input types stay unconnected from the input and from feedback.
    a0 = net.areas[0]
    assert a0.input_synapse.weight[a0.channels["I"]].abs().sum() == 0
    assert net.top_down[1].weight[a0.channels["E"]].abs().sum() == 0


def test_masks_and_signs_are_buffers():
    net = two_area()
    names = {n for n, _ in net.named_parameters()}
    assert not any("sign" in n or "mask" in n or "type_index" in n for n in names)


@pytest.mark.parametrize("mode", ["type", "channel", "position", "neuron"])
def test_tau_modes_and_learned_tau_stay_above_dt(mode):
    table = motif("E-I", channels=4)
    area = SpatialArea(table, (5, 5), 1, dt=5.0, tau_mode=mode, learn_tau=True, generator=gen())
    raw = area.time_constants.parametrizations.tau.original
    opt = torch.optim.SGD([raw], lr=1e4)
    for _ in range(3):
        rates, _ = area(torch.rand(3, 1, 5, 5), steps=3)
        (-rates.sum()).backward()  # large steps toward short tau
        opt.step()
        opt.zero_grad()
    assert (raw < -5).any()  # the raw value went far below the bound ...
    full = area.tau
    assert full.shape in ((5, 1, 1), (5, 5, 5))
    assert (full >= 5.0).all() and torch.isfinite(full).all()  # ... tau did not: alpha <= 1
    taus = area.tau_by_type()
    assert set(taus) == {"E", "I"} and taus["E"].numel() == 4 * 25


def test_fixed_tau_below_dt_rejected():
    with pytest.raises(ValueError, match=r"tau must be >= dt"):
        SpatialArea(motif("E-I"), (4, 4), 1, dt=15.0)


def test_top_down_arrives_after_delay_onto_chosen_type():
    k = 2
    net = two_area(top_down=[TopDown(1, 0, cell_types=("I",), delay=k, strength=2.0)])
    silent = copy.deepcopy(net)
    with torch.no_grad():
        silent.top_down[0].synapse.parametrizations.weight.original.zero_()
    x = torch.rand(2, 1, 8, 8)
    rec = net.record(net(x, steps=6)[1])
    rec0 = silent.record(silent(x, steps=6)[1])
    diff_i = (rec.query(0, "I") - rec0.query(0, "I")).abs().flatten(2).amax(-1).amax(0)
    diff_e = (rec.query(0, "E") - rec0.query(0, "E")).abs().flatten(2).amax(-1).amax(0)
    first = 1 + k  # output of step t-1-k arrives at step t
    assert (diff_i[:first] == 0).all() and diff_i[first] > 0
    assert (diff_e[: first + 1] == 0).all() and diff_e[first + 1] > 0  # E only through recurrence
    assert rec.query(1).sub(rec0.query(1)).abs()[:, : first + 1].max() == 0


def test_feedforward_delay():
    net = two_area(top_down=[], ff_delay=2)
    rec = net.record(net(torch.rand(2, 1, 8, 8), steps=5)[1])
    a1 = rec.query(1).abs().flatten(2).amax(-1).amax(0)
    assert (a1[:2] == 0).all() and a1[2] > 0


def test_additive_and_multiplicative_step_definitions():
    area = SpatialArea(motif("E-I", channels=2), (4, 4), 1, dt=5.0, generator=gen())
    with torch.no_grad():
        area.bias.fill_(0.1)
    h = torch.randn(2, 3, 4, 4)
    ff = torch.randn(2, 3, 4, 4)
    f = torch.rand(2, 3, 4, 4)
    alpha = area.dt / area.tau
    syn = area.synaptic_input(area.rates(h)) + ff
    b = area.bias[:, None, None]
    add = area.step(h, ff, fb_add=f)
    mul = area.step(h, ff, fb_gain=1 + torch.tanh(f))
    torch.testing.assert_close(add, h + alpha * (syn + f + b - h))
    torch.testing.assert_close(mul, h + alpha * (syn * (1 + torch.tanh(f)) + b - h))
    # Gain modulation leaves silent input silent; additive feedback does not.
    zero = torch.zeros(2, 3, 4, 4)
    with torch.no_grad():
        area.bias.zero_()
    assert area.step(zero, zero, fb_gain=1 + torch.tanh(f)).abs().max() == 0
    assert area.step(zero, zero, fb_add=f).abs().max() > 0


def test_multiplicative_and_additive_networks_differ():
    x = torch.rand(2, 1, 8, 8)
    outs = {}
    for mode in ("additive", "multiplicative"):
        net = two_area(top_down=[TopDown(1, 0, mode=mode, strength=2.0)])
        outs[mode] = net.record(net(x, steps=5)[1]).query(0, "E")
    assert not torch.allclose(outs["additive"], outs["multiplicative"])


def test_synaptic_nonlinearity_applied_per_group():
    t = CellTypeTable(
        [CellType("E", count=2), CellType("I", count=1, sign=-1)],
        [TypeConnection("E", "E", extent=3), TypeConnection("I", "E", synapse="sigmoid", extent=1),
         TypeConnection("E", "I", extent=5)])
    area = SpatialArea(t, (6, 6), 1, generator=gen())
    r = torch.rand(2, 3, 6, 6)
    got = area.synaptic_input(r)
    w_ee, w_ie, w_ei = (area.connection_weight(*p) for p in (("E", "E"), ("I", "E"), ("E", "I")))
    exp_e = F.conv2d(r[:, :2], w_ee, padding=1) - torch.sigmoid(-F.conv2d(r[:, 2:], w_ie))
    exp_i = F.conv2d(r[:, :2], w_ei, padding=2)
    torch.testing.assert_close(got, torch.cat([exp_e, exp_i], 1))
    assert (w_ie <= 0).all()


def test_per_type_nonlinearity():
    t = motif("E-I", channels=2).update_type("I", nonlinearity="sigmoid")
    area = SpatialArea(t, (3, 3), 1)
    h = torch.randn(1, 3, 3, 3)
    r = area.rates(h)
    torch.testing.assert_close(r[:, :2], torch.relu(h[:, :2]))
    torch.testing.assert_close(r[:, 2:], torch.sigmoid(h[:, 2:]))


def test_query_returns_the_right_slices():
    net = SpatialNetwork(motif("E-PV-SST-VIP", channels=4), [(6, 6), (3, 3)], 1, 2,
                         area_names=["V1", "V2"], generator=gen())
    rec = net.record(net(torch.rand(3, 1, 6, 6), steps=4)[1])
    full = rec.rates[0]
    sl = net.areas[0].channels["SST"]
    torch.testing.assert_close(rec.query("V1", "SST", t=2, position=(1, 4)), full[:, 2, sl, 1, 4])
    assert rec.query(0, "E", t=-1).shape == (3, 4, 6, 6)
    assert rec.query(1, "VIP", position=(0, 0)).shape == (3, 4, 1)
    assert rec.query("V2", batch=0).shape == (4, 7, 3, 3)
    with pytest.raises(ValueError, match="types are"):
        rec.query(0, "L5")
    with pytest.raises(ValueError, match="areas are"):
        rec.query("V4")


def test_explicit_state_continues_a_run():
    net = two_area(top_down=[TopDown(1, 0, delay=1)])
    x = torch.rand(2, 1, 8, 8)
    out_full, _, _ = net.run(x, steps=6)
    out_a, _, state = net.run(x, steps=3)
    out_b, _, _ = net.run(x, steps=3, state=state)
    torch.testing.assert_close(torch.cat([out_a, out_b], 1), out_full)


def test_tiny_training_run_reduces_loss():
    torch.manual_seed(0)
    g = gen(1)
    x = torch.rand(32, 1, 8, 8, generator=g)
    y = (x[:, 0, :, :4].mean((1, 2)) > x[:, 0, :, 4:].mean((1, 2))).long()  # brighter left half
    net = two_area(top_down=[TopDown(1, 0, delay=1)], learn_tau=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        out, _ = net(x, steps=4)
        loss = F.cross_entropy(out[:, -1], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_density_types_share_n_channels():
    t = CellTypeTable([CellType("E", density=0.75), CellType("I", density=0.25, sign=-1)],
                      [TypeConnection("E", "I"), TypeConnection("I", "E")])
    area = SpatialArea(t, (4, 4), 1, n_channels=8)
    assert area.type_sizes == [6, 2] and area.channels["I"] == slice(6, 8)


def test_figures(tmp_path):
    from bionn.viz import plot_activity_maps, plot_time_constants

    net = two_area(learn_tau=True)
    rec = net.record(net(torch.rand(2, 1, 8, 8), steps=4)[1])
    plot_activity_maps(rec, "area1", times=[0, -1], path=tmp_path / "a.png")
    plot_time_constants(net.tau_by_type(), net.tau_by_type(), dt=net.dt, path=tmp_path / "t.png")
    assert (tmp_path / "a.png").stat().st_size > 1000 and (tmp_path / "t.png").stat().st_size > 1000
