"""Cell-type tables: validation, expansion to neurons, modification, non-spatial builds."""

import pytest
import torch

from bionn.circuits import CellType, CellTypeTable, TypeConnection
from bionn.rate import CTRNN
from bionn.viz import plot_cell_type_table


def ei_table(**kw):
    return CellTypeTable(
        [CellType("E", count=6, sign=1, tau=20.0), CellType("I", count=2, sign=-1, tau=10.0)],
        [TypeConnection("E", "E", strength=0.5), TypeConnection("E", "I"),
         TypeConnection("I", "E", strength=2.0), TypeConnection("I", "I", allowed=False)],
        **kw,
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sign": 2}, "sign must be"),
        ({"sign": "excit"}, "sign must be"),
        ({"tau": 0.0}, "tau must be a positive"),
        ({"nonlinearity": "gelu"}, "nonlinearity must be one of"),
        ({"count": 0}, "count must be a positive integer"),
        ({"density": 1.5}, "density must be"),
    ],
)
def test_cell_type_validation_names_field(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        CellType("PV", **kwargs)
    assert "PV" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"extent": 4}, "extent"),
        ({"strength": -1.0}, "strength"),
        ({"synapse": "exp"}, "synapse must be one of"),
    ],
)
def test_connection_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TypeConnection("E", "I", **kwargs)


def test_table_validation():
    e = CellType("E")
    with pytest.raises(ValueError, match="unique"):
        CellTypeTable([e, e])
    with pytest.raises(ValueError, match=r"pre type 'X' is not in the table; types are \['E'\]"):
        CellTypeTable([e], [TypeConnection("X", "E")])
    with pytest.raises(ValueError, match="listed twice"):
        CellTypeTable([e], [TypeConnection("E", "E"), TypeConnection("E", "E")])
    with pytest.raises(ValueError, match="inputs must name"):
        CellTypeTable([e], inputs=("I",))


def test_sign_words_and_defaults():
    t = CellTypeTable([CellType("A", sign="E"), CellType("B", sign="inhibitory"), CellType("C", sign=0)])
    assert [x.sign for x in t.types] == [1, -1, 0]
    assert t.inputs == ("A",) and t.outputs == ("A",)
    t = CellTypeTable([CellType("U", sign=0)])
    assert t.inputs == ("U",)


def test_per_neuron_expansion():
    t = ei_table()
    assert t.sizes() == {"E": 6, "I": 2}
    assert t.labels().tolist() == [0] * 6 + [1] * 2
    assert t.sign().tolist() == [1.0] * 6 + [-1.0] * 2
    assert t.tau().tolist() == [20.0] * 6 + [10.0] * 2
    m = t.connection_mask()
    assert m.shape == (8, 8)
    assert m[:6, :6].eq(1).all() and m[6:, :6].eq(1).all() and m[:6, 6:].eq(1).all()
    assert m[6:, 6:].eq(0).all()  # I->I listed as not allowed
    assert t.type_matrix("strength").tolist() == [[0.5, 2.0], [1.0, 0.0]]


def test_density_sizes():
    t = CellTypeTable([CellType("E", density=0.8), CellType("I", density=0.2, sign=-1),
                       CellType("X", count=3, sign=-1)])
    assert t.sizes(23) == {"E": 16, "I": 4, "X": 3}
    with pytest.raises(ValueError, match="pass the total n"):
        t.sizes()


def test_initial_weight_block_strength():
    t = ei_table()
    w = t.initial_weight(generator=torch.Generator().manual_seed(0))
    assert (w[:, 6:] <= 0).all() and (w[:, :6] >= 0).all()
    assert w[6:, 6:].abs().sum() == 0


def test_modified_copies():
    t = ei_table()
    t2 = t.connect("I", "I", strength=0.3).update("E", "E", strength=0.1, extent=7)
    assert t.connection("I", "I") is None
    assert t2.connection("I", "I").strength == 0.3
    assert t2.connection("E", "E").extent == 7
    t3 = t2.disconnect("I", "E").update_type("I", tau=5.0)
    assert t3.connection("I", "E") is None and t3["I"].tau == 5.0
    t4 = t3.remove_type("I")
    assert t4.names == ("E",) and all("I" not in (c.pre, c.post) for c in t4.connections)
    with pytest.raises(ValueError, match="no connection"):
        t4.update("E", "I", strength=1.0)
    with pytest.raises(ValueError, match="fields that can be changed"):
        t.update("E", "E", weight=1.0)


def test_summary_and_markdown():
    t = ei_table(name="demo")
    s = t.summary()
    assert "demo" in s and "-2/k3" in s
    md = t.to_markdown()
    assert "| E | I | E | yes | identity | 3 | 1 |" in md


def test_from_cell_types_keeps_blocks_and_dale():
    t = ei_table()
    net = CTRNN.from_cell_types(t, 2, 1, generator=torch.Generator().manual_seed(0), dt=5.0, learn_tau=True)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(3):
        out, _ = net(torch.randn(4, 6, 2))
        loss = out.pow(2).mean() - out.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = net.weight_rec.detach()
    assert (w[:, 6:] <= 0).all() and (w[:, :6] >= 0).all()
    assert w[6:, 6:].abs().sum() == 0
    assert (net.tau > 5.0).all()
    # Input only onto E (the table's input types), readout only from E.
    assert net.weight_in[6:].abs().sum() == 0 and net.weight_out[:, 6:].abs().sum() == 0


def test_from_cell_types_rejects_what_it_cannot_do():
    t = ei_table().update_type("I", nonlinearity="tanh")
    with pytest.raises(ValueError, match="one nonlinearity"):
        CTRNN.from_cell_types(t, 1, 1)
    t = ei_table().update("E", "I", synapse="sigmoid")
    with pytest.raises(ValueError, match="linear synapses"):
        CTRNN.from_cell_types(t, 1, 1)
    t = ei_table().add_type(CellType("U", sign=0))
    with pytest.raises(ValueError, match="unsigned"):
        CTRNN.from_cell_types(t, 1, 1)
    with pytest.raises(ValueError, match="comes from the cell-type table"):
        CTRNN.from_cell_types(ei_table(), 1, 1, tau=3.0)


def test_plot_table(tmp_path):
    fig = plot_cell_type_table(ei_table(name="x"), tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert fig is not None


def test_with_io():
    t = ei_table().with_io(inputs=("E", "I"))
    assert t.inputs == ("E", "I") and t.outputs == ("E",)
    with pytest.raises(ValueError, match="inputs must name"):
        ei_table().with_io(inputs=("X",))
    net = CTRNN.from_cell_types(t, 1, 1)
    assert net.weight_in[6:].abs().sum() > 0
