"""One structure object: :class:`bionn.circuits.Connectivity` (dense or sparse, signs,
weights, cell-type labels), produced by every builder and taken by every model."""

import inspect

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import bionn.circuits as circuits
from bionn.circuits import (
    Circuit,
    Connectivity,
    Connectome,
    MultiArea,
    MultiAreaEI,
    RandomInput,
    all_to_all,
    blocks,
    distance_prob,
    fixed_in_degree,
    fixed_out_degree,
    fixed_prob,
    list_motifs,
    motif,
    one_to_one,
)
from bionn.circuits.connectome import connectome_from_connectivity
from bionn.constraints import Dale
from bionn.rate import CTRNN
from bionn.spiking import Exponential, Projection
from bionn.spiking.connectome import from_cell_types, spiking_network
from bionn.spiking.networks import cuba, ei_balanced


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ the class
def test_dense_and_sparse_hold_the_same_structure():
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]], dtype=torch.bool)
    d = Connectivity(mask, sign=[1, -1, 0], weight=torch.tensor([[0.0, 2.0, 3.0], [4.0, 0.0, 0.0]]))
    s = d.to_sparse()
    assert (d.layout, s.layout) == ("dense", "sparse") and s.is_sparse and not d.is_sparse
    assert d.shape == s.shape == (2, 3) and d.n_post == 2 and d.n_pre == 3 and d.nnz == s.nnz == 3
    for c in (d, s):
        post, pre = c.edges()
        assert post.tolist() == [0, 0, 1] and pre.tolist() == [1, 2, 0]
        assert c.weight.tolist() == [2.0, 3.0, 4.0]
        assert c.signed_weight().tolist() == [-2.0, 3.0, 4.0]  # sign 0: unsigned, as given
        assert torch.equal(c.dense(), mask.float())
        assert torch.equal(c.matrix(), torch.tensor([[0.0, -2.0, 3.0], [4.0, 0.0, 0.0]]))
    assert torch.equal(s.to_dense().mask, d.mask) and s.to_dense().layout == "dense"
    assert s.mask.layout == torch.sparse_coo and torch.equal(s.mask.to_dense(), d.mask)
    assert d.to_dense() is d and s.to_sparse() is s


def test_sparse_layout_is_index_arrays_without_a_dense_matrix():
    n = 200_000  # a dense mask would be 160 GB
    c = Connectivity(post=torch.arange(n), pre=(torch.arange(n) * 7) % n, shape=(n, n), sign=-1)
    assert c.is_sparse and c.nnz == n and c.density == 1 / n
    assert c._mask is None and c._post.numel() == n  # O(nnz) storage
    assert c.sign.shape == (n,) and bool((c.sign == -1).all())


def test_edge_lists_are_sorted_and_repeats_merged_with_their_weights():
    c = Connectivity(post=[1, 0, 1, 0], pre=[0, 2, 0, 1], shape=(2, 3), weight=[1.0, 2.0, 3.0, 4.0])
    post, pre = c.edges()
    assert post.tolist() == [0, 0, 1] and pre.tolist() == [1, 2, 0]
    assert c.weight.tolist() == [4.0, 2.0, 4.0]  # (1, 0) twice: 1 + 3
    dense = Connectivity(post=[1, 0, 1, 0], pre=[0, 2, 0, 1], shape=(2, 3), weight=[1.0, 2.0, 3.0, 4.0],
                         layout="dense")
    assert torch.equal(dense.weight, c.weight) and torch.equal(dense.mask, c.dense())


def test_types_select_replace_and_repr():
    c = Connectivity(torch.ones(3, 4), sign=[1, 1, -1, -1], pre_types=list("EEII"), post_types=["E", "E", "I"])
    assert c.pre_types == ("E", "E", "I", "I") and c.post_types == ("E", "E", "I")
    sub = c.select(post=slice(0, 2), pre=[3, 0])
    assert sub.shape == (2, 2) and sub.sign.tolist() == [-1.0, 1.0] and sub.pre_types == ("I", "E")
    assert sub.post_types == ("E", "E") and sub.layout == "dense"
    assert c.select(pre=(2, 4)).sign.tolist() == [-1.0, -1.0]
    r = c.with_sign(None).with_weight(torch.full((12,), 0.5))
    assert r.sign is None and r.weight.tolist() == [0.5] * 12 and c.weight is None
    assert c.replace(layout="sparse").is_sparse
    assert "sign E=2 I=2" in repr(c) and "typed" in repr(c)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Connectivity(torch.ones(2, 3), sign=torch.ones(2)), "presynaptic"),
        (lambda: Connectivity(torch.ones(2, 3), sign=[1, 2, 1]), r"\+1 \(excitatory\)"),
        (lambda: Connectivity(torch.tensor([[0.0, 2.0]])), "only 0 and 1"),
        (lambda: Connectivity(torch.tensor([[0.0, 2.0]]).to_sparse()), "only 0 and 1"),
        (lambda: Connectivity(torch.ones(3)), "2-D"),
        (lambda: Connectivity(post=[0, 3], pre=[0, 0], shape=(2, 2)), "out of range"),
        (lambda: Connectivity(post=[0], pre=[0, 1], shape=(2, 2)), "differ in length"),
        (lambda: Connectivity(post=[0], pre=[0]), "shape"),
        (lambda: Connectivity(torch.ones(2, 2), post=[0], pre=[0]), "not both"),
        (lambda: Connectivity(torch.ones(2, 2), weight=torch.ones(3)), "one value per synapse"),
        (lambda: Connectivity(torch.ones(1, 2), sign=[1, -1], weight=[1.0, -1.0]), "magnitudes"),
        (lambda: Connectivity(torch.ones(2, 2), pre_types=["E"]), "pre_types"),
        (lambda: Connectivity(torch.ones(2, 2), layout="csr"), "layout"),
        (lambda: Circuit(Connectivity(torch.ones(3, 3)), torch.ones(2, 1)), "input_mask"),
        (lambda: Circuit(Connectivity(torch.ones(3, 4))), "square"),
    ],
)
def test_bad_connectivity_fails_clearly(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------------ one implementation per rule
RULES = {
    "all_to_all": lambda layout: all_to_all(7, 5, layout=layout),
    "all_to_all_no_autapses": lambda layout: all_to_all(6, 6, autapses=False, layout=layout),
    "one_to_one": lambda layout: one_to_one(6, layout=layout),
    "fixed_prob": lambda layout: fixed_prob(60, 40, 0.2, autapses=False, generator=gen(1), layout=layout),
    "fixed_in_degree": lambda layout: fixed_in_degree(30, 20, 4, generator=gen(2), layout=layout),
    "fixed_out_degree": lambda layout: fixed_out_degree(30, 20, 4, generator=gen(3), layout=layout),
    "distance_prob": lambda layout: distance_prob((6, 6), (5, 5), sigma=0.2, generator=gen(4),
                                                  layout=layout),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_gives_the_same_synapses_dense_or_sparse(rule):
    d, s = RULES[rule]("dense"), RULES[rule]("sparse")
    assert isinstance(d, Connectivity) and isinstance(s, Connectivity)
    assert d.layout == "dense" and s.layout == "sparse"
    assert torch.equal(d.mask, s.dense())
    for a, b in zip(d.edges(), s.edges(), strict=True):
        assert torch.equal(a, b)


def test_the_dense_probability_rule_is_gone():
    assert not hasattr(circuits, "fixed_probability")
    assert not hasattr(circuits.connectivity, "fixed_probability")


def test_blocks_offsets_weights_and_block_signs():
    c = blocks({(0, 1): all_to_all(2, 3).with_sign(-1).with_weight(torch.full((6,), 2.0)),
                (1, 0): one_to_one(2).with_sign(1)}, [2, 2], [2, 3])
    assert c.shape == (4, 5) and c.sign.tolist() == [1, 1, -1, -1, -1]
    assert torch.equal(c.matrix()[:2, 2:], torch.full((2, 3), -2.0))
    assert torch.equal(c.matrix()[2:, :2], torch.eye(2))
    with pytest.raises(ValueError, match="shape"):
        blocks({(0, 0): all_to_all(3, 3)}, [2], [2])
    with pytest.raises(ValueError, match="disagree"):
        blocks({(0, 0): one_to_one(2).with_sign(1), (1, 0): one_to_one(2).with_sign(-1)}, [2, 2], [2])


# ------------------------------------------------------------------ every builder produces it
@pytest.mark.parametrize("spec", [
    MultiArea([30, 20], [[0.5, 0.1], [0.3, 0.5]], n_input=2, n_output=3),
    MultiAreaEI([30, 20], [[0.5, 0.1], [0.3, 0.5]], n_input=2, n_output=3),
    RandomInput(50, 2, 3, density=0.3, e_fraction=0.8),
])
def test_builders_return_connectivity_for_every_connection(spec):
    c = spec.build(gen(7))
    assert isinstance(c, Circuit)
    for name, conn in c.connectivities().items():
        assert isinstance(conn, Connectivity), name
    assert c.recurrent.shape == (50, 50) and c.input.shape == (50, 2) and c.readout.shape == (3, 50)
    assert torch.equal(c.input_mask, c.input.dense()) and torch.equal(c.readout_mask, c.readout.dense())
    sparse = spec.build(gen(7), layout="sparse")
    assert sparse.recurrent.is_sparse and torch.equal(sparse.recurrent.dense(), c.recurrent.mask)
    if isinstance(spec, (MultiAreaEI, RandomInput)):
        assert c.sign is c.recurrent.sign and int((c.sign > 0).sum()) == 40


def test_multi_area_draws_each_block_with_the_fixed_probability_rule():
    spec = MultiArea([30, 20], [[0.5, 0.0], [0.3, 0.5]], n_input=1, n_output=1)
    c = spec.build(gen(3)).recurrent
    g = gen(3)
    expected = blocks({(0, 0): fixed_prob(30, 30, 0.5, autapses=False, generator=g),
                       (1, 0): fixed_prob(20, 30, 0.3, generator=g),
                       (1, 1): fixed_prob(20, 20, 0.5, autapses=False, generator=g)}, [30, 20], [30, 20])
    assert torch.equal(c.mask, expected.dense())


def test_cell_type_table_connectivity():
    t = motif("E-PV-SST-VIP", channels=8)
    c = t.connectivity()
    n = t.n_neurons()
    assert isinstance(c, Connectivity) and c.shape == (n, n)
    assert torch.equal(c.dense(), t.connection_mask()) and torch.equal(c.sign, t.sign())
    assert c.pre_types == c.post_types == tuple(t.names[i] for i in t.labels().tolist())
    sizes = t.sizes()
    post, pre = c.edges()
    for k in range(0, c.nnz, 17):  # weight = strength / size of the presynaptic type
        q, p = c.pre_types[pre[k]], c.post_types[post[k]]
        assert c.weight[k].item() == pytest.approx(t.connection(q, p).strength / sizes[q])
    assert torch.equal(t.connectivity(layout="sparse").dense(), c.dense())
    circuit = t.to_circuit(n_input=2, n_output=1)
    assert torch.equal(circuit.recurrent.dense(), c.dense()) and torch.equal(circuit.sign, c.sign)


@pytest.mark.parametrize("name", list_motifs())
def test_motifs_build_connectivity_through_their_tables(name):
    t = motif(name)
    c = t.connectivity()
    assert isinstance(c, Connectivity) and torch.equal(c.dense(), t.connection_mask())


def test_connectome_connectivity_is_the_same_class():
    c = Connectome(4, pre=torch.tensor([2, 0, 1, 3]), post=torch.tensor([0, 1, 3, 2]),
                   weight=torch.tensor([3.0, 2.0, 1.0, 5.0]), sign=torch.tensor([-1.0, 1.0, 1.0, 1.0]),
                   types=("a", "a", "b", "c"), groups={"input": [0, 1]})
    k = c.connectivity(dale=True)
    assert type(k) is Connectivity and k.is_sparse and k.sign.tolist() == [1.0, 1.0, -1.0, 1.0]
    assert torch.equal(k.matrix(), c.to_dense()) and bool((k.weight >= 0).all())
    assert k.pre_types == ("a", "a", "b", "c")
    u = c.connectivity()
    assert u.sign is None and torch.equal(u.matrix(), c.to_dense())
    assert c.connectivity(layout="dense").layout == "dense"
    back = connectome_from_connectivity(k)
    assert torch.equal(back.to_dense(), c.to_dense()) and back.types == c.types


def test_connectome_select_is_the_shared_neuron_selection():
    c = Connectome(4, pre=torch.tensor([0]), post=torch.tensor([1]), weight=1.0, sign=1.0,
                   types=("s", "s", "m", "m"), groups={"sensory": [1], "motor": [2, 3]})
    assert c.select(None, ("input", "sensory")) == [1]
    assert c.select(None, ("nothing",)) == [0, 1, 2, 3]
    assert c.select("all") == [0, 1, 2, 3] and c.select("motor") == [2, 3] and c.select("s") == [0, 1]
    assert c.select([3, 0]) == [3, 0]
    with pytest.raises(ValueError, match="drive_neurons='x' is neither a group"):
        c.select("x", what="drive_neurons")
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        c.select([4])


def test_spiking_connectome_no_longer_imports_the_rate_layer():
    import ast

    import bionn.spiking.connectome as sc

    imported = [node.module for node in ast.walk(ast.parse(inspect.getsource(sc)))
                if isinstance(node, ast.ImportFrom)]
    assert imported and not [m for m in imported if m.startswith("bionn.rate")]


# ------------------------------------------------------------------ every model accepts it
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_ctrnn_takes_a_recurrent_connectivity(layout):
    conn = fixed_prob(20, 20, 0.3, autapses=False, generator=gen(0), layout=layout).with_sign(
        torch.tensor([1.0] * 15 + [-1.0] * 5))
    net = CTRNN(2, 20, 1, circuit=conn, generator=gen(1))
    assert torch.equal(net.sign, conn.sign) and net.area is None
    via_circuit = CTRNN(2, 20, 1, circuit=Circuit(conn), generator=gen(1))
    assert torch.equal(net.weight_rec, via_circuit.weight_rec)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net(torch.randn(4, 6, 2))[0].square().mean().backward()
    opt.step()
    w, mask = net.weight_rec.detach(), conn.dense()
    assert bool((w[mask == 0] == 0).all())
    assert bool((w[:, :15] >= 0).all()) and bool((w[:, 15:] <= 0).all())
    with pytest.raises(ValueError, match="shape"):
        CTRNN(2, 21, 1, circuit=conn)


def test_projection_applies_the_connectivity_signs():
    conn = all_to_all(2, 3).with_sign([1, -1, 0])
    p = Projection("A", "B", conn, Exponential(), weight=2.0)
    assert torch.equal(p.dense_weight(), torch.tensor([[2.0, -2.0, 2.0], [2.0, -2.0, 2.0]]))
    assert torch.equal(p.pre_sign, conn.sign)
    weighted = conn.with_weight(torch.arange(6.0))
    q = Projection("A", "B", weighted, Exponential())  # weight=None: the connectivity's
    assert torch.equal(q.dense_weight(), weighted.matrix())
    with pytest.raises(ValueError, match="magnitudes"):
        Projection("A", "B", conn, Exponential(), weight=-1.0)
    with pytest.raises(ValueError, match="reversal"):
        Projection("A", "B", conn, Exponential(), output="conductance", E=-80.0)
    unsigned = Projection("A", "B", all_to_all(2, 3), Exponential(), weight=-1.5)
    assert unsigned.pre_sign is None and bool((unsigned.dense_weight() == -1.5).all())


def test_ready_networks_carry_signs_in_their_connectivity():
    net = cuba(200, generator=gen(0))
    exc, inh = net.projections
    assert bool((exc.pre_sign == 1).all()) and bool((inh.pre_sign == -1).all())
    assert bool((inh.weight[inh.edge_mask] == -9.0).all())
    with pytest.raises(ValueError, match="wi <= 0"):
        cuba(200, wi=9.0)
    net = ei_balanced(20, 20, generator=gen(0))
    for p in net.projections:
        assert bool((p.pre_sign == (1 if p.pre == "E" else -1)).all())
        w = p.weight[p.edge_mask]
        assert bool((w > 0).all()) if p.pre == "E" else bool((w < 0).all())


def _spiking_matrix(net) -> torch.Tensor:
    return sum(p.dense_weight() for p in net.projections)


def test_one_table_builds_a_rate_rnn_and_a_spiking_network_with_one_structure():
    from bionn.learning import convert

    t = motif("E-PV-SST-VIP", channels=8)
    conn = t.connectivity()
    rate = CTRNN.from_cell_types(t, 2, 1, dt=5.0, generator=gen(0))
    spiking = from_cell_types(t, weight_scale=10.0)
    w_rate = rate.weight_rec.detach()
    w_spk = _spiking_matrix(spiking)
    # the same per-neuron signs ...
    assert torch.equal(rate.sign, conn.sign)
    for p in spiking.projections:
        pre = p.dense_weight().abs().sum(0) > 0
        assert bool((conn.sign[pre] == p.pre_sign[pre]).all())
    assert bool((w_spk[:, conn.sign > 0] >= 0).all()) and bool((w_spk[:, conn.sign < 0] <= 0).all())
    # ... and the same connection pattern
    assert torch.equal((w_spk != 0).float(), conn.dense())
    rate_mask = rate.parametrizations.weight_rec[-1].mask
    assert torch.equal(rate_mask, conn.dense()) and bool((w_rate[conn.dense() == 0] == 0).all())
    # the spiking weights are the table's strengths
    assert torch.allclose(w_spk, 10.0 * conn.matrix())
    # per-neuron membrane time constants from the types
    assert torch.equal(spiking.groups["N"].tau, t.tau())
    # feedback alignment keeps the structure
    fa = convert(rate, "fa").model
    opt = torch.optim.SGD(fa.parameters(), lr=0.5)
    fa(torch.randn(3, 5, 2))[0].square().mean().backward()
    opt.step()
    w = fa.weight_rec.detach()
    assert bool((w[conn.dense() == 0] == 0).all())
    assert bool((w[:, conn.sign > 0] >= 0).all()) and bool((w[:, conn.sign < 0] <= 0).all())


def test_spiking_networks_from_a_table_and_a_connectome_share_one_code_path():
    t = motif("E-I", channels=8)
    net = from_cell_types(t, weight_scale=20.0, drive=25.0)
    assert [p.name for p in net.projections] == ["exc", "inh"]
    drive = net.inputs["N"]
    assert drive[:8].eq(25.0).all() and drive[8:].eq(0.0).all()  # onto the input type E
    assert net.run(60.0, dt=0.1, progress=False).spikes["N"].count() > 0
    c = connectome_from_connectivity(t.connectivity(), types=None)
    via_connectome = spiking_network(c, weight_scale=20.0, dale=True)
    assert torch.equal(_spiking_matrix(via_connectome), _spiking_matrix(net))


# ------------------------------------------------------------------ one Dale parametrization
def test_synaptic_diversity_dale_is_the_one_dale_parametrization():
    import bionn.plasticity.diversity as diversity
    from bionn.plasticity import BioConverter

    assert not hasattr(diversity, "ChannelDale")
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    BioConverter(dale={"skip_input": True}).convert(model, inplace=True)
    for layer in (model[2], model[4]):
        p = layer.parametrizations.weight[0]
        assert type(p) is Dale and p.dim == 1
    assert not parametrize.is_parametrized(model[0], "weight")


# ----------------------------------------------------------------- building edges without a COO detour
def _fixed_prob_one_draw(n_post, n_pre, p, k, generator):
    """The rule as one draw for all rows (the reference the chunked sampler must reproduce)."""
    import math

    log1mp = math.log1p(-p)
    rows, posts, pres = torch.arange(n_post), [], []
    while rows.numel():
        u = torch.rand(rows.numel(), k, generator=generator, dtype=torch.float64).clamp_min(1e-300)
        pos = (torch.floor(torch.log(u) / log1mp).long() + 1).cumsum(1) - 1
        done = pos[:, -1] >= n_pre
        r, c = (pos < n_pre).logical_and(done[:, None]).nonzero(as_tuple=True)
        posts.append(rows[r])
        pres.append(pos[r, c])
        rows = rows[~done]
        k *= 2
    return torch.cat(posts), torch.cat(pres)


@pytest.mark.parametrize("draw, first_k", [(1 << 20, None), (64, None), (50, 3)])
def test_fixed_prob_chunked_draw_gives_the_synapses_of_one_draw(monkeypatch, draw, first_k):
    from bionn.circuits import connect

    monkeypatch.setattr(connect, "_DRAW", draw)  # many chunks of rows
    if first_k is not None:  # too few successes per row at first: rows are redrawn with 2k, 4k, ...
        monkeypatch.setattr(connect, "_first_k", lambda n_pre, p: first_k)
    n_post, n_pre, p = 300, 200, 0.1
    k = connect._first_k(n_pre, p)
    post, pre = _fixed_prob_one_draw(n_post, n_pre, p, k, gen(5))
    ref = Connectivity(post=post, pre=pre, shape=(n_post, n_pre))
    c = fixed_prob(n_post, n_pre, p, generator=gen(5))
    assert c.edges()[0].dtype == torch.long and c.edges()[1].dtype == torch.long
    assert torch.equal(c.edges()[0], ref.edges()[0]) and torch.equal(c.edges()[1], ref.edges()[1])


def test_edges_copy_false_returns_the_stored_arrays():
    c = fixed_prob(40, 30, 0.2, generator=gen(2))
    p, q = c.edges(copy=False)
    p2, q2 = c.edges()
    assert p is c.edges(copy=False)[0] and torch.equal(p, p2) and p2.data_ptr() != p.data_ptr()
    d = c.to_dense()
    assert torch.equal(d.edges(copy=False)[1], q)


def test_sorted_check_across_chunks_and_repeats_merged():
    from bionn.circuits.connectivity import _strictly_sorted

    n = (1 << 20) + 5
    post = torch.arange(n)
    assert _strictly_sorted(post, torch.zeros(n, dtype=torch.long))
    post[1 << 20] = post[(1 << 20) - 1]  # a repeat exactly at the chunk boundary
    assert not _strictly_sorted(post, torch.zeros(n, dtype=torch.long))
    assert _strictly_sorted(torch.tensor([0, 0, 1]), torch.tensor([1, 2, 0]))
    assert not _strictly_sorted(torch.tensor([0, 0, 1]), torch.tensor([2, 1, 0]))
    c = Connectivity(post=[1, 0, 1, 1], pre=[0, 2, 0, 1], shape=(2, 3), weight=[1.0, 2.0, 3.0, 4.0])
    assert c.edges()[0].tolist() == [0, 1, 1] and c.weight.tolist() == [2.0, 4.0, 4.0]


def test_out_edge_table_from_sorted_or_shuffled_edges():
    from bionn.spiking.synapses import _ell

    c = fixed_prob(70, 50, 0.15, generator=gen(3))
    post, pre = c.edges()
    w = torch.rand(post.numel(), generator=gen(4))
    targets, weights = _ell(pre, post, w, 50, 70)
    k = int(torch.bincount(pre, minlength=50).max())
    assert targets.shape == (50, k) and targets.dtype == torch.long
    for j in range(50):  # row j: its post neurons in increasing order, then padding (n_post, weight 0)
        mine = (pre == j).nonzero().flatten()
        assert targets[j, :mine.numel()].tolist() == post[mine].tolist()
        assert torch.equal(weights[j, :mine.numel()], w[mine])
        assert (targets[j, mine.numel():] == 70).all() and (weights[j, mine.numel():] == 0).all()
    perm = torch.randperm(post.numel(), generator=gen(6))
    t2, w2 = _ell(pre[perm], post[perm], w[perm], 50, 70)
    assert torch.equal(t2, targets) and torch.equal(w2, weights)
    t0, w0 = _ell(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), torch.empty(0), 4, 3)
    assert t0.tolist() == [[3]] * 4 and w0.tolist() == [[0.0]] * 4
