"""Every feature of the recurrent core works on every model of it: CTRNN (dense),
ConnectomeRNN (sparse) and SpatialNetwork (convolutional).

One test per row of the table in docs/conventions.md ("what works on every model"),
each parametrized over the three configurations.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from bionn.circuits import motif
from bionn.circuits.connectome import Connectome
from bionn.learning import (
    KolenPollack,
    WeightMirror,
    convert,
    exact_gradients,
    gradient_alignment,
    mirror,
    norm_ratios,
    weight_angles,
)
from bionn.losses import RNNLoss, masked_mse
from bionn.plasticity import BioConverter
from bionn.plasticity.diversity import STATE_NAME
from bionn.rate import CTRNN, ConnectomeRNN, SpatialNetwork, TopDown
from bionn.recurrent import RecurrentModel, TimeConstants, detach_state, recurrent_models

KINDS = ("ctrnn", "connectome", "spatial")
T = 6


def tiny_connectome() -> Connectome:
    g = torch.Generator().manual_seed(3)
    n = 10
    pre, post = torch.randint(0, n, (40,), generator=g), torch.randint(0, n, (40,), generator=g)
    keep = pre != post
    pre, post = pre[keep], post[keep]
    key = torch.unique(pre * n + post)
    pre, post = key // n, key % n
    sign = torch.where(pre < 7, 1.0, -1.0)  # neurons 7-9 inhibitory: Dale-consistent
    weight = torch.randint(1, 4, (pre.numel(),), generator=g).float()
    types = tuple("a" if i < 4 else "b" if i < 7 else "c" for i in range(n))
    return Connectome(n, pre=pre, post=post, weight=weight, sign=sign, types=types)


def make(kind: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    kw.setdefault("tau", 50.0)
    if kind == "ctrnn":
        return CTRNN(3, 12, 2, dt=10.0, e_fraction=0.75, generator=g, **kw)
    if kind == "connectome":
        kw.setdefault("learn_tau", False)
        return ConnectomeRNN(tiny_connectome(), 3, 2, dt=10.0, input_neurons=[0, 1, 2],
                             output_neurons=[5, 6, 8], dale=True, generator=g, **kw)
    kw.pop("tau")
    return SpatialNetwork(motif("E-I", channels=2), [(4, 4), (2, 2)], 1, 2, dt=10.0,
                          top_down=[TopDown(1, 0, delay=1)], generator=g, **kw)


def inputs(kind: str, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if kind == "spatial":
        return torch.rand(batch, T, 1, 4, 4, generator=g)
    return torch.randn(batch, T, 3, generator=g)


def loss_of(model, x) -> torch.Tensor:
    out, rates = model(x)
    return masked_mse(out, torch.ones_like(out)) + 1e-2 * rates.pow(2).mean()


def grads(model, x) -> dict[str, torch.Tensor]:
    leaves = model.connection_parameters()
    g = torch.autograd.grad(loss_of(model, x), list(leaves.values()), allow_unused=True)
    return {k: v for k, v in zip(leaves, g, strict=True)}


@pytest.mark.parametrize("kind", KINDS)
def test_protocol_and_call_convention(kind):
    model = make(kind)
    assert isinstance(model, RecurrentModel) and recurrent_models(model) == [("", model)]
    x = inputs(kind)
    out, rates = model(x)
    out2, rates2, state = model(x, return_state=True)
    assert out.shape == (3, T, 2) and rates.shape[:2] == (3, T) and rates.dim() == 3
    torch.testing.assert_close(out, out2)
    # the state continues the trial exactly
    a, _, s = model(x[:, :2], return_state=True)
    b, _ = model(x[:, 2:], s)
    torch.testing.assert_close(torch.cat([a, b], 1), out)
    # one step at a time (closed loop) gives the same outputs
    s = model.initial_state(3)
    p = model.prepare()
    steps = []
    for t in range(T):
        o, r, s = model.step(s, x[:, t], p)
        steps.append(o)
    torch.testing.assert_close(torch.stack(steps, 1), out)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["preact_noise", "postact_noise"])
def test_noise(kind, which):
    x = inputs(kind)
    quiet = make(kind)
    noisy = make(kind, **{which: 0.3})
    noisy.load_state_dict(quiet.state_dict())
    torch.testing.assert_close(quiet(x)[0], quiet(x)[0])
    a, b = noisy(x)[0], noisy(x)[0]
    assert not torch.allclose(a, b) and not torch.allclose(a, quiet(x)[0])
    torch.manual_seed(5)
    a = noisy(x)[0]
    torch.manual_seed(5)
    torch.testing.assert_close(noisy(x)[0], a)  # deterministic under a seed


@pytest.mark.parametrize("kind", KINDS)
def test_learned_initial_state(kind):
    model = make(kind, learn_initial_state=True)
    assert isinstance(model.h0, torch.nn.Parameter)
    with torch.no_grad():
        model.h0.normal_()
    x = inputs(kind)
    loss_of(model, x).backward()
    assert model.h0.grad is not None and model.h0.grad.abs().sum() > 0
    assert make(kind).h0 is None


TAU_SPECS = {
    "ctrnn": [dict(tau_groups="neuron"), dict(tau_groups="type", tau=[40.0, 80.0]),
              dict(tau_groups=torch.tensor([0] * 4 + [1] * 4 + [2] * 4), tau=[20.0, 50.0, 200.0])],
    "connectome": [dict(tau_mode="neuron"), dict(tau_mode="type", tau=[20.0, 50.0, 100.0])],
    "spatial": [dict(tau_mode=m) for m in ("type", "channel", "position", "neuron")],
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("learn", [False, True])
def test_time_constants_per_neuron_type_block(kind, learn):
    x = inputs(kind)
    for spec in TAU_SPECS[kind]:
        model = make(kind, learn_tau=learn, **spec)
        tc = [m for m in model.modules() if isinstance(m, TimeConstants)]
        assert tc and all(m.learn == learn for m in tc)
        params = [p for m in tc for p in m.parameters()]
        assert bool(params) == learn
        if not learn:
            continue
        opt = torch.optim.SGD(params, lr=1e4)  # huge steps towards short tau
        for _ in range(3):
            opt.zero_grad()
            (-model(x)[1].sum()).backward()
            opt.step()
        tau = model.tau.detach()
        assert torch.isfinite(tau).all() and (tau >= model.dt).all()  # alpha <= 1 kept
        for m in tc:  # values shared within a group stay shared
            if m.index is not None:
                per = m.per_unit().detach()
                for gi in torch.unique(m.index):
                    vals = per[m.index == gi]
                    assert torch.allclose(vals, vals[0].expand_as(vals))


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_and_checkpointed_bptt(kind):
    x = inputs(kind)
    model = make(kind)
    full = grads(model, x)

    # checkpointed: two chunks, activations recomputed in backward; exact gradients
    def chunk(xc, state):
        return model(xc, state, return_state=True)

    state = model.initial_state(3)
    outs, rates = [], []
    for t0 in (0, 3):
        o, r, state = checkpoint(chunk, x[:, t0:t0 + 3], state, use_reentrant=False)
        outs.append(o)
        rates.append(r)
    out, r = torch.cat(outs, 1), torch.cat(rates, 1)
    loss = masked_mse(out, torch.ones_like(out)) + 1e-2 * r.pow(2).mean()
    leaves = model.connection_parameters()
    ck = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), allow_unused=True),
                  strict=True))
    for k in full:
        if full[k] is not None:
            torch.testing.assert_close(ck[k], full[k], rtol=1e-4, atol=1e-6)

    # truncated: the state between chunks is detached; forward unchanged, gradients differ
    state = model.initial_state(3)
    o1, _, state = model(x[:, :3], state, return_state=True)
    o2, _, _ = model(x[:, 3:], detach_state(state), return_state=True)
    torch.testing.assert_close(torch.cat([o1, o2], 1).detach(), model(x)[0].detach())
    masked_mse(o2, torch.ones_like(o2)).backward()
    rec = model.connection_parameters()
    assert all(torch.isfinite(p.grad).all() for p in rec.values() if p.grad is not None)


def test_fused_scan_where_the_operator_allows_it():
    x = inputs("ctrnn")
    fused, loop = make("ctrnn"), make("ctrnn", fused=False)
    gf, gl = grads(fused, x), grads(loop, x)
    for k in gf:
        torch.testing.assert_close(gf[k], gl[k], rtol=1e-5, atol=1e-7)
    # sparse and convolutional operators run the generic loop
    for kind in ("connectome", "spatial"):
        assert make(kind).dense_recurrent(make(kind).prepare()) is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["fa", "usf", "kp", "wm"])
def test_feedback_alignment_through_time(kind, method):
    x = inputs(kind)
    model = make(kind)
    exact = grads(model, x)
    fa, report = convert(model, method)
    names = set(model.connection_weights())
    assert set(fa.credit_assignment) == names and len(report) == len(names)
    got = grads(fa, x)
    assert all(torch.isfinite(g).all() for g in got.values() if g is not None)
    # the readout's own gradient is exact (the error at its output is the true one) ...
    torch.testing.assert_close(got["readout"], exact["readout"])
    # ... the others follow B, not W
    upstream = [k for k in names if k != "readout" and exact[k] is not None]
    assert any(not torch.allclose(got[k], exact[k]) for k in upstream)
    with exact_gradients(fa):
        back = grads(fa, x)
    for k in exact:
        if exact[k] is not None:
            torch.testing.assert_close(back[k], exact[k])
    if method == "kp":  # B receives W's gradient
        fa.zero_grad()
        loss_of(fa, x).backward()
        for rule in fa.credit_assignment.values():
            assert isinstance(rule, KolenPollack) and rule.weight_feedback.grad is not None
    if method == "wm":
        before = {k: r.weight_feedback.clone() for k, r in fa.credit_assignment.items()}
        mirror(fa, eta=0.1)
        assert all(isinstance(r, WeightMirror) for r in fa.credit_assignment.values())
        assert any(not torch.equal(before[k], r.weight_feedback) for k, r in fa.credit_assignment.items())


@pytest.mark.parametrize("kind", KINDS)
def test_feedback_equal_to_forward_weights_is_backprop(kind):
    """With B set to W on every connection, FA through time is exactly BPTT: the error goes
    back through each operator (dense, sparse, convolution) by B."""
    x = inputs(kind)
    model = make(kind)
    exact = grads(model, x)
    fa = convert(model, "fa").model
    weights = fa.connection_weights()
    with torch.no_grad():
        for k, rule in fa.credit_assignment.items():
            rule.weight_feedback.copy_(weights[k])
    got = grads(fa, x)
    for k in exact:
        if exact[k] is not None:
            torch.testing.assert_close(got[k], exact[k], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_metrics(kind):
    x = inputs(kind)
    fa = convert(make(kind), "fa").model
    names = set(fa.connection_weights())
    assert set(weight_angles(fa)) == names and set(norm_ratios(fa)) == names
    angles = gradient_alignment(fa, lambda out, y: masked_mse(out[0], y), x, torch.ones(3, T, 2))
    assert set(angles) == names and angles["readout"] < 1e-3
    assert all(0.0 <= a <= 180.0 for a in angles.values())


@pytest.mark.parametrize("kind", KINDS)
def test_synaptic_diversity(kind):
    x = inputs(kind)
    model = make(kind)
    sign_before = {k: torch.sign(w.detach()) for k, w in model.connection_weights().items()}
    bio = BioConverter(fuzzy_learning_rates={"distribution": "lognormal"},
                       crystallization={}).convert(model, inplace=True)
    leaves = {id(p) for p in model.connection_parameters().values()}
    assert leaves <= {id(t.leaf) for t in bio.targets}  # every connection is transformed
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    bio.attach(opt)
    for _ in range(2):
        opt.zero_grad()
        loss_of(model, x).backward()
        opt.step()
    assert bio.steps == 2
    after = model.connection_weights()
    for k in ("recurrent",) if kind != "spatial" else [k for k in after if "->" in k]:
        s = sign_before[k]
        nz = s != 0
        assert (torch.sign(after[k].detach())[nz] * s[nz] >= 0).all()  # Dale signs held


@pytest.mark.parametrize("kind", KINDS)
def test_rnn_loss_l2_on_every_connection(kind):
    x = inputs(kind)
    model = make(kind)
    out, rates = model(x)
    loss = RNNLoss(l2={"all": 1e-2, "readout": 0.5}, rate_mean=1e-3)
    total, terms = loss(out, torch.zeros_like(out), rates, weights=model.connection_weights())
    names = set(model.connection_weights())
    assert {f"l2_{k}" for k in names} <= set(terms)
    w = model.connection_weights()["readout"]
    torch.testing.assert_close(terms["l2_readout"], 0.5 * w.pow(2).mean())
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.connection_parameters().values())


@pytest.mark.parametrize("kind", KINDS)
def test_deepcopy_and_state_dict_round_trip(kind):
    model = make(kind, learn_tau=True)
    x = inputs(kind)
    clone = copy.deepcopy(model)
    torch.testing.assert_close(clone(x)[0], model(x)[0])
    other = make(kind, learn_tau=True)
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(other(x)[0], model(x)[0])


class _Spiking(NamedTuple):
    v: torch.Tensor
    r: torch.Tensor  # spikes, what the synapses see


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, v):  # noqa: D102
        ctx.save_for_backward(v)
        return (v > 1.0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        (v,) = ctx.saved_tensors
        return g / (1.0 + 10.0 * (v - 1.0).abs()) ** 2  # fast sigmoid surrogate


class _TinyLIF(CTRNN):
    """A spiking layer as one more configuration of the core: only the cell update and the
    initial state change (leaky membrane, threshold 1, reset by subtraction)."""

    def initial_state(self, batch_size):
        v = self.weight_out.new_zeros(batch_size, self.n_hidden)
        return _Spiking(v, torch.zeros_like(v))

    def cell_update(self, state, syn, alpha, pre_noise=None, post_noise=None):
        v = torch.lerp(state.v, syn, alpha) - state.r  # reset by subtraction
        return _Spiking(v, _Spike.apply(v))


def test_a_spiking_layer_is_one_more_configuration():
    torch.manual_seed(0)
    net = _TinyLIF(3, 16, 2, dt=1.0, tau=10.0, e_fraction=0.75, fused=False)
    with torch.no_grad():
        net.weight_in.mul_(20.0)
    x = torch.rand(4, 30, 3)
    out, spikes, state = net(x, return_state=True)
    assert spikes.sum() > 0 and set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert isinstance(state, _Spiking)
    g = grads(net, x)  # surrogate gradients through time
    assert all(v is not None and v.abs().sum() > 0 for v in g.values())
    fa = convert(net, "fa").model  # credit assignment through time, unchanged
    assert set(fa.credit_assignment) == {"input", "recurrent", "readout"}
    g_fa = grads(fa, x)
    assert g_fa["recurrent"].abs().sum() > 0 and not torch.allclose(g_fa["input"], g["input"])


@pytest.mark.parametrize("kind", KINDS)
def test_both_converters_return_model_and_report_and_copy_by_default(kind):
    model = make(kind)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    results = [convert(model, "fa"), BioConverter(fuzzy_learning_rates=True).convert(model)]
    for result in results:
        assert result.model is not model  # inplace=False for both: a converted copy
        assert len(result.report) == len(result.report.names) > 0 and str(result.report)
    assert model.credit_assignment is None
    assert not any(hasattr(m, STATE_NAME) for m in model.modules())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert convert(model, "fa", inplace=True).model is model and model.credit_assignment is not None
    other = make(kind)
    assert BioConverter(fuzzy_learning_rates=True).convert(other, inplace=True).model is other
    assert any(hasattr(m, STATE_NAME) for m in other.modules())


def test_one_table_builds_rate_dense_rate_sparse_and_spiking_models():
    """One structure object: a cell-type table's Connectivity feeds a CTRNN, a ConnectomeRNN
    and (tested in test_connectivity) a spiking network, with the same signs and pattern."""
    table = motif("E-I", channels=4)
    conn = table.connectivity()
    dense = CTRNN.from_cell_types(table, 2, 1)
    sparse = ConnectomeRNN(conn, 2, 1, tau=20.0, weight_sharing="edge", dale=True)
    pattern = sparse.recurrent_weight().detach() != 0
    assert torch.equal(pattern, conn.dense().bool()) and torch.equal(pattern, dense.weight_rec != 0)
    w = sparse.recurrent_weight().detach()
    assert torch.equal(torch.sign(w.sum(0))[w.abs().sum(0) > 0], conn.sign[w.abs().sum(0) > 0])
    assert sparse.type_names == ("E", "I")
