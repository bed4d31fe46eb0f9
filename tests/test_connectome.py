"""Connectome loaders, ConnectomeRNN and the spiking builder."""

import builtins
import importlib.util
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bionn.circuits.connectome import (
    CELEGANS_SIGNS,
    Connectome,
    celegans,
    fly_optic_lobe,
    from_edge_list,
    from_networkx,
    from_scipy,
)
from bionn.rate import ConnectomeRNN
from bionn.spiking.connectome import spiking_network

ROOT = Path(__file__).parents[1]


def _tiny() -> Connectome:
    # 0 -> 1 -> 2 -> 3 -> 0 ring plus 1 -> 3; neuron 2 inhibitory
    return Connectome(4, pre=torch.tensor([0, 1, 2, 3, 1]), post=torch.tensor([1, 2, 3, 0, 3]),
                      weight=torch.tensor([2.0, 1.0, 3.0, 1.0, 4.0]),
                      sign=torch.tensor([1.0, 1.0, -1.0, 1.0, 1.0]),
                      names=("a", "b", "c", "d"), types=("X", "X", "Y", "Y"),
                      groups={"input": [0], "output": [3]})


def test_connectome_validation():
    with pytest.raises(ValueError, match="one per synapse"):
        Connectome(2, pre=torch.tensor([0]), post=torch.tensor([1, 0]), weight=1.0, sign=1.0)
    with pytest.raises(ValueError, match=r"\+1"):
        Connectome(2, pre=torch.tensor([0]), post=torch.tensor([1]), weight=1.0, sign=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        Connectome(2, pre=torch.tensor([0]), post=torch.tensor([1]), weight=-1.0, sign=1.0)
    c = _tiny()
    assert c.type_names == ("X", "Y") and c.type_index.tolist() == [0, 0, 1, 1]
    d = c.to_dense()
    assert d[3, 1] == 4.0 and d[3, 2] == -3.0  # (post, pre)
    assert c.connectivity(dale=True).sign.tolist() == [1.0, 1.0, -1.0, 1.0]


def test_csv_loader_names_transmitters_and_duplicates(tmp_path):
    p = tmp_path / "edges.csv"
    p.write_text("pre,post,count,nt\nA,B,3,acetylcholine\nB,C,2,GABA\nA,B,1,acetylcholine\nC,A,5,glutamate\n")
    c = from_edge_list(p, transmitter="nt", types={"A": "sensory", "B": "inter"})
    assert c.names == ("A", "B", "C") and c.types == ("sensory", "inter", "C")
    w = c.to_dense()
    assert w[1, 0] == 4.0 and w[2, 1] == -2.0 and w[0, 2] == 5.0  # duplicates summed
    fly = from_edge_list(p, transmitter="nt", sign_table={"acetylcholine": 1, "gaba": -1, "glutamate": -1})
    assert fly.to_dense()[0, 2] == -5.0
    with pytest.raises(ValueError, match="no sign for"):
        from_edge_list(p, transmitter="nt", sign_table={"gaba": -1})


def test_tsv_integer_ids_and_sign_column(tmp_path):
    p = tmp_path / "edges.tsv"
    p.write_text("src\ttgt\tweight\tsign\n0\t4\t1.5\t-1\n2\t1\t2\tE\n")
    with pytest.raises(ValueError, match="no column"):
        from_edge_list(p)
    c = from_edge_list(p, pre="src", post="tgt", sign="sign")  # ids are labels, sorted: 0 1 2 4
    assert c.n == 4 and c.names == ("0", "1", "2", "4") and sorted(c.signed_weight().tolist()) == [-1.5, 2.0]
    d = c.to_dense()
    assert d[3, 0] == -1.5 and d[1, 2] == 2.0
    c5 = from_edge_list(p, pre="src", post="tgt", sign="sign", n=5)  # n=: ids are indices
    assert c5.n == 5 and c5.to_dense()[4, 0] == -1.5 and c5.names[3] == "3"


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="pyarrow"):
        from_edge_list(tmp_path / "edges.parquet")


def test_scipy_and_networkx_loaders():
    sp = pytest.importorskip("scipy.sparse", reason="scipy not installed")
    m = sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, -1.0], [3.0, 0, 0]]))  # (post, pre)
    c = from_scipy(m, names=["p", "q", "r"])
    torch.testing.assert_close(c.to_dense(), torch.tensor(m.toarray(), dtype=torch.float32))
    assert np.allclose(c.to_scipy().toarray(), m.toarray())
    c2 = from_scipy(abs(m), sign=[1, -1, 1])
    assert c2.to_dense()[0, 1] == -2.0
    nx = pytest.importorskip("networkx", reason="networkx not installed")
    g = nx.DiGraph()
    g.add_node("u", type="T1")
    g.add_node("v", transmitter="GABA")
    g.add_edge("u", "v", weight=3)
    g.add_edge("v", "u", weight=2)
    g.add_edge("u", "w", sign=-1)
    c3 = from_networkx(g)
    assert c3.names == ("u", "v", "w") and c3.types == ("T1", "v", "w")
    d = c3.to_dense()
    assert d[1, 0] == 3.0 and d[0, 1] == -2.0 and d[2, 0] == -1.0


def test_dale_on_signed_connectome_is_an_error_not_zeroing():
    c = Connectome(3, pre=torch.tensor([0, 0, 1]), post=torch.tensor([1, 2, 2]),
                   weight=torch.tensor([1.0, 5.0, 1.0]), sign=torch.tensor([1.0, -1.0, 1.0]),
                   names=("mixed", "b", "c"))
    with pytest.raises(ValueError, match="mixed"):
        c.neuron_sign()
    with pytest.raises(ValueError, match="Dale"):
        ConnectomeRNN(c, 1, 1, dale=True)
    with pytest.warns(UserWarning, match="majority"):
        d = c.with_dale("majority")
    assert d.sign.tolist() == [-1.0, -1.0, 1.0] and torch.equal(d.weight, c.weight)  # nothing zeroed
    net = ConnectomeRNN(c, 1, 1)  # per-edge signs: fine
    assert (net.recurrent_values() != 0).all()


def test_celegans_from_cect():
    pytest.importorskip("cect", reason="cect not installed (pip install --no-deps cect)")
    with pytest.warns(UserWarning, match="both signs"):
        c = celegans()
    assert c.n == 302 and 3000 < c.nnz < 4000
    assert len(c.groups["sensory"]) > 50 and len(c.groups["motor"]) > 100
    i = c.indices(["DD1"])[0]  # GABAergic D-type motor neuron: inhibitory out-edges
    assert (c.sign[c.pre == i] < 0).all()
    assert c.types[c.indices(["AVAL"])[0]] == "AVA" == c.types[c.indices(["AVAR"])[0]]
    gj = celegans("Cook2019Herm", gap_junctions=True, sign_table={**CELEGANS_SIGNS})
    assert gj.nnz > c.nnz
    with pytest.raises(ValueError, match="unknown C. elegans dataset"):
        celegans("nope")


def test_fly_optic_lobe_from_flyvis():
    pytest.importorskip("scipy", reason="fly_optic_lobe needs scipy")
    if importlib.util.find_spec("flyvis") is None:
        pytest.skip("flyvis not installed (pip install --no-deps flyvis)")
    small = fly_optic_lobe(extent=2)
    assert small.n == 19 * 63 + 2 * 3 and len(small.type_names) == 65
    assert set(small.groups["input"]) == set(small.of_types([f"R{i}" for i in range(1, 9)]))
    net = ConnectomeRNN(small, 2, 3)  # inputs on R1-R8, readout from the decoded types
    out, rates = net(torch.randn(2, 3, 2))
    assert out.shape == (2, 3, 3) and 590 < net.strength.numel() <= 605  # one per connected type pair
    assert net.input_index.numel() == 8 * 19 and torch.isfinite(rates).all()
    full = fly_optic_lobe()
    assert (full.n, full.nnz) == (45_669, 1_513_231)  # the flyvis network (extent 15)
    assert "flyvis" not in sys.modules  # read the JSON only


def test_connectome_rnn_trains_and_constraints_hold():
    torch.manual_seed(0)
    c = _tiny()
    for sharing, tau_mode in (("type", "type"), ("edge", "neuron")):
        net = ConnectomeRNN(c, 2, 1, dt=10, tau=30.0, weight_sharing=sharing, tau_mode=tau_mode)
        opt = torch.optim.Adam(net.parameters(), lr=0.5)
        x = torch.randn(4, 6, 2)
        target = torch.ones(4, 6, 1)
        losses = []
        for _ in range(15):
            out, rates = net(x)
            loss = ((out - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        v = net.recurrent_values().detach()
        assert torch.equal(torch.sign(v), net.sign)  # signs fixed after large steps
        assert (net.tau > 10).all()  # tau > dt by parametrization
        w = net.recurrent_weight().detach()
        assert ((w != 0) <= (c.to_dense() != 0)).all()  # no synapse outside the connectome
    assert net.strength.shape == (5,)


def test_connectome_rnn_matches_dense_reference_and_state():
    torch.manual_seed(1)
    c = _tiny()
    net = ConnectomeRNN(c, 2, 1, dt=10, tau=40.0, activation="tanh")
    x = torch.randn(3, 5, 2)
    out, rates, final = net.run(x)
    w = net.recurrent_weight()
    h = torch.zeros(3, 4)
    alpha = 10 / net.tau
    for t in range(5):
        d = net.neuron_bias() + torch.zeros(3, 4).index_add(1, net.input_index, x[:, t] @ net.weight_in.t())
        h = (1 - alpha) * h + alpha * (torch.tanh(h) @ w.t() + d)
        torch.testing.assert_close(rates[:, t], torch.tanh(h))
    torch.testing.assert_close(final.h, h)
    out2, _, _ = net.run(x[:, 3:], net.run(x[:, :3])[2])  # explicit state continues the run
    torch.testing.assert_close(out2, out[:, 3:])
    with pytest.raises(ValueError, match="batch, time"):
        net(torch.randn(3, 2))
    with pytest.raises(ValueError, match="tau must be >= dt"):
        ConnectomeRNN(c, 1, 1, dt=10, tau=5.0)


def test_spiking_network_runs_and_spikes():
    c = _tiny()
    net = spiking_network(c, drive=30.0, weight_scale=5.0)
    res = net.run(50.0, dt=0.1, progress=False)
    assert res.spikes["N"].count() > 0
    names = [p.name for p in net.projections]
    assert names == ["exc", "inh"]
    inh = net.projections[1].dense_weight()
    assert (inh <= 0).all() and inh[3, 2] == -15.0


def test_example_runs_quick(tmp_path):
    pytest.importorskip("cect", reason="cect not installed")
    mod = runpy.run_path(str(ROOT / "examples" / "connectome_celegans.py"))
    res = mod["main"](["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "tau_by_type.png").stat().st_size > 0
    assert (tmp_path / "training.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["result"]["steps"] == res["steps"]


def test_cell_type_table_from_a_connectome(tmp_path):
    import torch

    from bionn.circuits import CellTypeTable, Connectome
    from bionn.viz import plot_cell_type_table

    c = Connectome(4, pre=torch.tensor([0, 1, 2, 3, 3]), post=torch.tensor([2, 2, 0, 0, 1]),
                   weight=torch.tensor([1.0, 3.0, 2.0, 5.0, 1.0]),
                   sign=torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0]), types=("e", "e", "i", "m"))
    t = c.cell_type_table(tau={"e": 10.0, "i": 5.0, "m": 30.0})
    assert isinstance(t, CellTypeTable)
    assert [(x.name, x.count, x.sign, x.tau) for x in t.types] == [
        ("e", 2, 1, 10.0), ("i", 1, -1, 5.0), ("m", 1, 0, 30.0)]
    got = {(k.pre, k.post): k.strength for k in t.active_connections}
    # e -> i: 1 + 3 onto one i neuron; i -> e: 2 over two e neurons; m -> e: (5 + 1) / 2
    assert got == {("e", "i"): 4.0, ("i", "e"): 1.0, ("m", "e"): 3.0}
    plot_cell_type_table(t, tmp_path / "types.png")
    assert (tmp_path / "types.png").stat().st_size > 0


# -- malformed and large-id edge lists (nothing lost, nothing silent) ------------------------
BIG = 720575940000000001  # a FlyWire-sized 64-bit body id


def test_64bit_ids_are_labels_in_every_loader(tmp_path):
    import time
    ids = [BIG + 7 * k for k in range(50)] + [99999999999]
    rows = [(ids[k], ids[(k * 3 + 1) % len(ids)], 1 + k % 4) for k in range(len(ids))]
    p = tmp_path / "flywire.csv"
    p.write_text("pre,post,count\n" + "".join(f"{a},{b},{w}\n" for a, b, w in rows))
    t0 = time.perf_counter()
    c = from_edge_list(p, types={str(BIG): "KC", BIG + 7: "KC"})
    assert time.perf_counter() - t0 < 5.0  # no allocation per integer up to the largest id
    assert c.n == len(set(ids)) and c.nnz == len(rows)
    assert list(c.names) == [str(i) for i in sorted(ids)]  # sorted numerically, originals as names
    assert c.types[c.names.index(str(BIG))] == "KC" and c.types[c.names.index(str(BIG + 7))] == "KC"
    k = c.names.index(str(BIG)), c.names.index(str(ids[1]))
    assert c.to_scipy()[k[1], k[0]] == 1.0  # (post, pre), the exact 64-bit ids (no float rounding)
    tsv = tmp_path / "flywire.tsv"
    tsv.write_text("pre\tpost\n" + "".join(f"{a}\t{b}\n" for a, b, _ in rows))
    assert from_edge_list(tsv).names == c.names
    table = {"pre": np.array([r[0] for r in rows], dtype=np.int64),
             "post": np.array([r[1] for r in rows], dtype=np.int64), "count": [r[2] for r in rows]}
    assert from_edge_list(table).names == c.names
    pd = pytest.importorskip("pandas")
    assert from_edge_list(pd.DataFrame(table)).names == c.names
    if importlib.util.find_spec("pyarrow") is not None:
        pd.DataFrame(table).to_parquet(tmp_path / "e.parquet")
        assert from_edge_list(tmp_path / "e.parquet").names == c.names
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge(BIG, 99999999999, weight=2)
    g2 = from_networkx(g)
    assert g2.n == 2 and g2.names == (str(BIG), "99999999999")
    with pytest.raises(ValueError, match=r"flywire.csv:2: column 'pre': id 72057\d+ is not an index in \[0, 10\)"):
        from_edge_list(p, n=10)  # n= takes ids as indices: refused, not allocated


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_weights_are_refused(tmp_path, value):
    p = tmp_path / "bad.csv"
    p.write_text(f"pre,post,count\n0,1,2\n\n1,2,{value}\n")  # line 4 (a blank line is skipped)
    with pytest.raises(ValueError, match=rf"bad.csv:4: column 'count': weight '{value}' is not finite"):
        from_edge_list(p)
    with pytest.raises(ValueError, match=r"edge list \(mapping\), row 1 \(0-based\): column 'w'"):
        from_edge_list({"pre": [0, 1], "post": [1, 0], "w": [1.0, float(value)]}, weight="w")
    sp = pytest.importorskip("scipy.sparse")
    m = sp.coo_matrix(([1.0, float(value)], ([0, 1], [1, 0])), shape=(2, 2))
    with pytest.raises(ValueError, match=r"matrix entry \[1, 0\] \(post, pre\) is .*finite"):
        from_scipy(m)
    with pytest.raises(ValueError, match="finite"):
        from_scipy(np.array([[0.0, float(value)], [1.0, 0.0]]))
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge("a", "b", weight=float(value))
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b': attribute 'weight': .* not finite"):
        from_networkx(g)
    with pytest.raises(ValueError, match=r"weight must be finite: weight\[0\]"):
        Connectome(2, pre=torch.tensor([0]), post=torch.tensor([1]), weight=float(value), sign=1.0)


def test_negative_counts_are_refused_the_sign_comes_from_its_column(tmp_path):
    p = tmp_path / "neg.csv"
    p.write_text("pre,post,count\n1,0,2\n0,1,-3\n")
    with pytest.raises(ValueError, match=r"neg.csv:3: column 'count': negative weight '-3'.*sign or transmitter column"):
        from_edge_list(p)
    q = tmp_path / "neg_sign.csv"
    q.write_text("pre,post,count,sign\n0,1,3,1\n1,0,-3,-1\n")
    with pytest.raises(ValueError, match=r"neg_sign.csv:3: column 'count': .*from column 'sign'"):
        from_edge_list(q, sign="sign")
    c = from_edge_list(_write(tmp_path / "ok.csv", q.read_text().replace(",-3,", ",3,")), sign="sign")
    assert c.signed_weight().tolist() == [3.0, -3.0]
    sp = pytest.importorskip("scipy.sparse")
    with pytest.raises(ValueError, match=r"entry \[0, 1\].*sign= gives the signs"):
        from_scipy(sp.csr_matrix(np.array([[0, -2.0], [1.0, 0]])), sign=[1, 1])
    assert from_scipy(sp.csr_matrix(np.array([[0, -2.0], [1.0, 0]]))).signed_weight().tolist() == [-2.0, 1.0]
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge("a", "b", weight=-2, sign=-1)
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b': attribute 'weight': negative weight -2"):
        from_networkx(g)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, kwargs, message", [
    ("pre,post,count\n0,1,2\n0,1\n", {}, r"bad.csv:3: 2 fields; the header has 3: no value for column 'count'"),
    ("pre,post,count\n0,1,2,9\n", {}, r"bad.csv:2: 4 fields; .*extra value '9'"),
    ("pre,post,count\n0,1,2\nx7,1,2\n", {}, r"bad.csv:3: column 'pre': neuron id 'x7' is a name but"),
    ("pre,post,count\n0,1.5,2\n", {}, r"bad.csv:2: column 'post': neuron id '1.5' is neither"),
    ("pre,post,count\nA,,2\n", {}, r"bad.csv:2: column 'post': missing neuron id"),
    ("pre,post,count\n0,1,2\n0,1,two\n", {}, r"bad.csv:3: column 'count': weight 'two' is not a number"),
    ("pre,post,count,nt\nA,B,2,ACh\nB,A,2,dopamine\n", {"transmitter": "nt"},
     r"bad.csv:3: column 'nt': no sign for transmitter 'dopamine'"),
    ("pre,post,count,sign\nA,B,2,E\nB,A,2,0\n", {"sign": "sign"}, r"bad.csv:3: column 'sign': sign '0' is not"),
    ("pre,post,count,sign\nA,B,2,nan\n", {"sign": "sign"}, r"bad.csv:2: column 'sign': sign 'nan' is not"),
    ("pre,post,pre\n0,1,2\n", {}, r"bad.csv:1: .*repeated column name"),
    ("pre,post,count\nA,B,2\nB,C,1\n", {"names": ["A", "B"]}, r"bad.csv:3: column 'post': neuron 'C' is not in names="),
])
def test_malformed_rows_name_file_line_column(tmp_path, text, kwargs, message):
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=message):
        from_edge_list(p, **kwargs)


def test_malformed_tables_name_row_and_column():
    with pytest.raises(ValueError, match=r"column 'post' has 1 entries"):
        from_edge_list({"pre": [0, 1], "post": [1]})
    with pytest.raises(ValueError, match=r"row 1 \(0-based\): column 'pre': missing neuron id"):
        from_edge_list({"pre": ["a", None], "post": ["b", "a"]})
    with pytest.raises(ValueError, match=r"row 0 \(0-based\): column 'w': weight 'x' is not a number"):
        from_edge_list({"pre": [0], "post": [1], "w": ["x"]}, weight="w")
    nx = pytest.importorskip("networkx")
    g = nx.DiGraph()
    g.add_edge("a", "b", weight="heavy")
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b': attribute 'weight': 'heavy' is not a number"):
        from_networkx(g)
    g = nx.DiGraph()
    g.add_edge("a", "b", sign=0)
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b': attribute 'sign': sign '0'"):
        from_networkx(g)
